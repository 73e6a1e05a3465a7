/**
 * Boots the tiny guest image under QEMU TCG and talks to it over its serial
 * console: the ready marker, an interactive shell, memload, and two guests on a
 * bridge in a test network namespace pinging each other.
 */
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTinyImage, type TinyImage } from '../../../images/guest/build.ts'
import { guestCmdline, guestReadyLine } from '../../../images/guest/cmdline.ts'

const BOOT_TIMEOUT_MS = 90_000
const prefix = `sct${randomBytes(2).toString('hex')}`

/** A QEMU process whose serial console is its stdio. */
class SerialGuest {
  readonly name: string
  readonly proc: ChildProcess
  private out = ''
  private waiters: Array<() => void> = []
  exited = false

  constructor (name: string, cmd: string, args: string[]) {
    this.name = name
    this.proc = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const onData = (b: Buffer): void => {
      // Drop \r and ash's cursor-position query (ESC [ 6 n) so lines compare plainly.
      this.out += b.toString('utf8').replace(/\r/g, '').replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
      for (const w of this.waiters) w()
    }
    this.proc.stdout?.on('data', onData)
    this.proc.stderr?.on('data', onData)
    this.proc.on('exit', () => { this.exited = true; for (const w of this.waiters) w() })
  }

  get output (): string { return this.out }
  mark (): number { return this.out.length }

  /** Resolves with the first match of re in the output after `from`; rejects with the console tail on timeout or exit. */
  waitFor (re: RegExp, timeoutMs: number, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.out.slice(from).match(re)
        if (m !== null) { done(); resolve(m); return true }
        if (this.exited) { done(); reject(new Error(`${this.name}: QEMU exited before ${re}\n${this.tail()}`)); return true }
        return false
      }
      const timer = setTimeout(() => { done(); reject(new Error(`${this.name}: no ${re} within ${timeoutMs} ms\n${this.tail()}`)) }, timeoutMs)
      const done = (): void => { clearTimeout(timer); this.waiters = this.waiters.filter(w => w !== waiter) }
      const waiter = (): void => { check() }
      if (!check()) this.waiters.push(waiter)
    })
  }

  /** Waits for the shell prompt "<name># " after `from`; returns the offset just past it. */
  async prompt (timeoutMs: number, from = 0): Promise<number> {
    const m = await this.waitFor(new RegExp(`${this.name}# `), timeoutMs, from)
    return from + (m.index ?? 0) + m[0].length
  }

  /**
   * Types a command at the prompt, waits for `re` in what follows and then for
   * the next prompt, so the next command never races the shell.
   */
  async run (command: string, re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const from = this.mark()
    this.proc.stdin?.write(command + '\n')
    const m = await this.waitFor(re, timeoutMs, from)
    await this.prompt(timeoutMs, from + (m.index ?? 0) + m[0].length)
    return m
  }

  tail (): string { return this.out.split('\n').slice(-25).join('\n') }

  async kill (): Promise<void> {
    if (this.exited) return
    const gone = new Promise<void>(resolve => this.proc.once('exit', () => resolve()))
    this.proc.kill('SIGKILL')
    await gone
  }
}

function qemuArgs (img: TinyImage, append: string, extra: string[] = []): string[] {
  return [
    '-accel', 'tcg', '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
    '-serial', 'stdio',
    '-kernel', img.kernel, '-initrd', img.initrd, '-append', append,
    ...extra
  ]
}

function sh (cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`)
}

const haveQemu = spawnSync('qemu-system-x86_64', ['--version']).status === 0
const cacheDir = mkdtempSync(join(tmpdir(), `${prefix}-cache-`))
t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }))

t.test('guest boots to its ready marker and runs a shell', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const img = await buildTinyImage({ cacheDir })
  const name = `${prefix}-solo`
  const guest = new SerialGuest(name, 'qemu-system-x86_64', qemuArgs(img, guestCmdline({ name, nics: [] })))
  t.teardown(() => guest.kill())

  await guest.waitFor(new RegExp(`^${guestReadyLine(name)}$`, 'm'), BOOT_TIMEOUT_MS)
  t.equal(guest.output.split('\n').filter(l => l.includes('SUPERCLOUD-GUEST-')).length, 1, 'exactly one marker line')
  await guest.prompt(30_000)
  t.pass('prompt shows the VM name')

  await guest.run('echo $((6*7))', /^42$/m)
  t.pass('shell evaluates what we type')

  const sum = await guest.run('memload --mb 8 --checksum', /^checksum ([0-9a-f]{16})$/m, 60_000)
  t.match(sum[1], /^[0-9a-f]{16}$/, `memload checksum ${sum[1]}`)
  // The guest fill is deterministic: the same tool on the host gives the same checksum.
  const host = spawnSync(img.tools.memload, ['--mb', '8', '--checksum'], { encoding: 'utf8' })
  t.equal(host.stdout.trim(), `checksum ${sum[1]}`, 'guest and host agree on the checksum of an 8 MiB fill')

  const hostname = await guest.run('hostname', new RegExp(`^(${name})$`, 'm'))
  t.equal(hostname[1], name)

  // The shell is respawned after it exits.
  await guest.run('exit', /built-in shell \(ash\)/, 30_000)
  await guest.run('echo again-$((1+1))', /^again-2$/m)
  t.pass('shell respawned after exit')
})

t.test('two guests on a bridge in a namespace ping each other', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const img = await buildTinyImage({ cacheDir })
  const ns = `${prefix}-img`
  const br = `${prefix}br`
  const taps = [`${prefix}t0`, `${prefix}t1`]
  const guests: SerialGuest[] = []
  t.teardown(async () => {
    for (const g of guests) await g.kill()
    for (const tap of taps) spawnSync('ip', ['-n', ns, 'link', 'del', tap])
    spawnSync('ip', ['-n', ns, 'link', 'del', br])
    spawnSync('ip', ['netns', 'del', ns])
  })

  sh('ip', ['netns', 'add', ns])
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  sh('ip', ['-n', ns, 'link', 'add', br, 'type', 'bridge'])
  sh('ip', ['-n', ns, 'link', 'set', br, 'up'])
  for (const tap of taps) {
    sh('ip', ['-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
    sh('ip', ['-n', ns, 'link', 'set', tap, 'master', br])
    sh('ip', ['-n', ns, 'link', 'set', tap, 'up'])
  }

  // The namespace side of the bridge gets an address too, for the host-side UDP probe below.
  sh('ip', ['-n', ns, 'addr', 'add', '198.18.77.1/24', 'dev', br])

  const addrs = ['198.18.77.11', '198.18.77.12']
  for (const [i, tap] of taps.entries()) {
    const name = `${prefix}-g${i}`
    const append = guestCmdline({ name, nics: [{ ifname: 'eth0', address: `${addrs[i]}/24` }], mtu: 1450, udpEchoPort: 7007 })
    const mac = `52:54:00:${randomBytes(2).toString('hex').replace(/(..)(..)/, '$1:$2')}:0${i}`
    const args = qemuArgs(img, append, [
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device', `virtio-net-pci,netdev=n0,mac=${mac}`
    ])
    guests.push(new SerialGuest(name, 'ip', ['netns', 'exec', ns, 'qemu-system-x86_64', ...args]))
  }
  const [a, b] = guests
  if (a === undefined || b === undefined) throw new Error('guests not started')
  await Promise.all(guests.map(g => g.waitFor(new RegExp(`^${guestReadyLine(g.name)}$`, 'm'), BOOT_TIMEOUT_MS)))
  await Promise.all(guests.map(g => g.prompt(30_000)))
  t.pass('both guests ready')

  const mtu = await a.run('echo mtu=$(cat /sys/class/net/eth0/mtu)', /^mtu=(\d+)$/m)
  t.equal(mtu[1], '1450', 'sc.mtu applied')
  const ping = await a.run(`ping -c 3 -W 5 ${addrs[1]}; echo ping-rc=$?`, /(\d+) packets received[\s\S]*ping-rc=(\d+)/, 60_000)
  t.equal(ping[2], '0', 'ping exits 0')
  t.ok(Number(ping[1]) >= 1, `${ping[1]}/3 replies from guest B`)
  const addr = await b.run('ip -4 addr show dev eth0', /inet (\d+\.\d+\.\d+\.\d+\/\d+)/)
  t.equal(addr[1], `${addrs[1]}/24`, 'guest B has the address from sc.net')

  // sc.echo started netprobe's UDP echo in the guest; the host copy of netprobe probes it from the namespace.
  const probe = spawnSync('ip', ['netns', 'exec', ns, img.tools.netprobe, 'send', addrs[0] ?? '', '7007', '--count', '50', '--interval-ms', '10', '--linger-ms', '2000'], { encoding: 'utf8', timeout: 30_000 })
  const summary = JSON.parse(probe.stdout) as { sent: number, received: number, lost: number, maxGapMs: number }
  t.equal(summary.sent, 50)
  t.ok(summary.received > 0, `${summary.received}/50 datagrams echoed by guest A`)
  t.equal(summary.lost, summary.sent - summary.received)
})

t.test('sc.swap formats and enables a virtio disk as swap', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const img = await buildTinyImage({ cacheDir })
  const disk = join(cacheDir, `${prefix}-swap.img`)
  sh('qemu-img', ['create', '-q', '-f', 'raw', disk, '32M'])
  const name = `${prefix}-swap`
  const guest = new SerialGuest(name, 'qemu-system-x86_64', qemuArgs(img, guestCmdline({ name, nics: [], swapDevice: '/dev/vda' }), [
    '-drive', `file=${disk},format=raw,if=virtio`
  ]))
  t.teardown(() => guest.kill())
  await guest.waitFor(new RegExp(`^${guestReadyLine(name)}$`, 'm'), BOOT_TIMEOUT_MS)
  await guest.prompt(30_000)
  const swaps = await guest.run('cat /proc/swaps', /^\/dev\/vda\s+\S+\s+(\d+)/m)
  t.ok(Number(swaps[1]) > 30_000, `/dev/vda is swap (${swaps[1]} KiB)`)
})
