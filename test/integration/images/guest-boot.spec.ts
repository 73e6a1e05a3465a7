/**
 * Boots the tiny guest image under QEMU TCG and talks to it over its serial
 * console: the ready marker, an interactive shell, memload, and two guests on a
 * bridge in a test network namespace pinging each other.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { GUEST_FAILED_MARKER, guestCmdline, guestReadyLine } from '../../../images/guest/cmdline.ts'
import { BOOT_TIMEOUT_MS, haveQemu, qemuArgs, SerialGuest, sh } from './serial-guest.ts'

const prefix = `sct${randomBytes(2).toString('hex')}`

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

  const mtu = await a.run('echo mtu=$(cat /sys/class/net/eth0/mtu)', /^mtu=(\d+)\r?\n/m)
  t.equal(mtu[1], '1450', 'sc.mtu applied')
  const ping = await a.run(`ping -c 3 -W 5 ${addrs[1]}; echo ping-rc=$?`, /(\d+) packets received[\s\S]*ping-rc=(\d+)/, 60_000)
  t.equal(ping[2], '0', 'ping exits 0')
  t.ok(Number(ping[1]) >= 1, `${ping[1]}/3 replies from guest B`)
  const addr = await b.run('ip -4 addr show dev eth0', /inet (\d+\.\d+\.\d+\.\d+\/\d+) /)
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
  const swaps = await guest.run('cat /proc/swaps', /^\/dev\/vda\s+\S+\s+(\d+)\s/m)
  t.ok(Number(swaps[1]) > 30_000, `/dev/vda is swap (${swaps[1]} KiB)`)
})

t.test('a step that fails gives the FAILED line with what failed, and the shell still starts', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const img = await buildTinyImage({ cacheDir })
  const name = `${prefix}-fail`
  // sc.net names eth0 but QEMU gets no NIC (-nodefaults): init waits 10 s for it, then gives up.
  const guest = new SerialGuest(name, 'qemu-system-x86_64', qemuArgs(img, guestCmdline({ name, nics: [{ ifname: 'eth0', address: '198.18.77.31/24' }] })))
  t.teardown(() => guest.kill())
  await guest.waitFor(new RegExp(`^${GUEST_FAILED_MARKER} ${name} no interface eth0\n`, 'm'), BOOT_TIMEOUT_MS)
  t.match(guest.output, /^sc-init: no interface eth0$/m, 'the failure printed as it happened')
  t.equal(guest.output.split('\n').filter(l => l.includes('SUPERCLOUD-GUEST-')).length, 1, 'exactly one marker line')
  await guest.prompt(30_000)
  // Each pattern ends at the newline: the console streams, a line can be seen half written.
  const mounts = await guest.run('grep -c -E "^(proc /proc|sysfs /sys|devtmpfs /dev|devpts /dev/pts|tmpfs /dev/shm|tmpfs /run|tmpfs /tmp) " /proc/mounts', /^(\d+)\n/m)
  t.equal(mounts[1], '7', 'proc, sys, dev, pts, shm, run and tmp mounted')
  const etc = await guest.run('echo "etc:$(cat /etc/hostname):$(wc -c < /etc/fstab):$HOME"', /^etc:(\S*):(\d+):(\S*)\n/m)
  t.same(etc.slice(1), [name, '0', '/root'], 'hostname, empty fstab, HOME from /etc/profile')
  const mods = await guest.run('echo "modules:$(wc -l < /etc/sc-modules):$(ls /sys/module | grep -c -x -f /etc/sc-modules)"', /^modules:(\d+):(\d+)\n/m)
  t.equal(mods[2], mods[1], `every module in /etc/sc-modules loaded (${mods[1]})`)
})
