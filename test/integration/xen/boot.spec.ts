/**
 * A real Xen host on this machine: Debian's Xen 4.17 under QEMU (TCG) with the PV dom0
 * of images/xen-host, in its own network namespace, reached over SSH like any host;
 * then the project's tiny guest image started in it as a PV domain with `xl create`.
 * One Xen host for both subtests (TCG boots cost CPU). Needs xen-hypervisor-4.17-amd64
 * and xen-utils-4.17 (scripts/setup.sh).
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshConnection } from '../../../core/ssh.ts'
import { startXenHost, type XenHost } from '../../../drivers/local/xen-host.ts'
import { xlGuestConfig } from '../../../drivers/local/xen-host-args.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { xenGuestInitrd } from '../../../images/xen-host/guest-overlay.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'

const prefix = `sct${randomBytes(2).toString('hex')}`
const ns = `${prefix}-xen`
registerPrefix(prefix)
const dir = mkdtempSync(join(tmpdir(), `${prefix}-xen-`))
let host: XenHost | undefined
let conn: SshConnection | undefined
t.teardown(async () => {
  conn?.close()
  await host?.stop()
  sweepPrefix(prefix)
  rmSync(dir, { recursive: true, force: true })
})

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

t.test('Xen host boots to a dom0 that answers over SSH and lists Domain-0', async t => {
  execFileSync('ip', ['netns', 'add', ns])
  const key = join(dir, 'id_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'xen-test', '-f', key])

  host = await startXenHost({
    prefix,
    name: 'xen1',
    ns,
    dir: join(dir, 'xen1'),
    address: '198.18.240.2/24',
    tapAddress: '198.18.240.1',
    privateKeyPath: key,
    onProgress: ev => t.comment(`[${ev.phase}] ${ev.message}`)
  })
  t.comment(`dom0 ready after ${host.timings.readyMs} ms, sshd after ${host.timings.sshMs} ms`)

  conn = await SshConnection.connect('xen1', host.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
  const info = await conn.exec('xl info', { timeoutMs: 60_000 })
  t.match(info.stdout, /^xen_major\s*:\s*4$/m, 'xl info talks to a running Xen 4.x')
  t.match(info.stdout, /^xen_minor\s*:\s*17$/m, 'Xen 4.17')
  t.match(info.stdout, /^host\s*:\s*xen1$/m, 'on our dom0')
  const total = Number(/^total_memory\s*:\s*(\d+)$/m.exec(info.stdout)?.[1])
  t.ok(total >= 900 && total <= 1024, `Xen sees the machine's ~1024 MiB (${total})`)

  const list = await conn.exec('xl list', { timeoutMs: 60_000 })
  const dom0 = list.stdout.split('\n').find(l => l.startsWith('Domain-0 '))
  t.ok(dom0 !== undefined, 'xl list shows Domain-0')
  t.match(dom0 ?? '', /^Domain-0\s+0\s+\d+\s+1\s/, 'Domain-0 has id 0 and one vCPU')
})

t.test('the tiny guest image boots as a PV domain, reports ready on its console, answers on its vif and balloons', async t => {
  if (conn === undefined || host === undefined) { t.fail('no Xen host'); return }
  const img = await buildTinyImage()
  const gdir = '/var/lib/xen/images/g1'
  await conn.exec(`mkdir -p ${gdir}`)
  const copyStart = Date.now()
  await conn.writeFile(`${gdir}/vmlinuz`, readFileSync(img.kernel))
  await conn.writeFile(`${gdir}/initrd.img`, await xenGuestInitrd(img))
  t.comment(`guest kernel + initramfs copied into dom0 in ${Date.now() - copyStart} ms`)
  await conn.writeFile(`${gdir}/g1.cfg`, xlGuestConfig({
    name: 'g1',
    kernel: `${gdir}/vmlinuz`,
    ramdisk: `${gdir}/initrd.img`,
    extra: 'sc.name=g1 sc.net=eth0:198.18.240.10/24',
    memoryMiB: 128,
    vifs: [{ bridge: 'xenbr0', mac: '02:fc:00:00:00:0a' }]
  }))

  const started = Date.now()
  const created = await conn.exec(`xl create ${gdir}/g1.cfg`, { timeoutMs: 120_000, allowFailure: true })
  t.equal(created.code, 0, 'xl create succeeds')
  t.notMatch(created.stderr, /error/i, `no errors from xl create: ${created.stderr.trim()}`)
  const log = '/var/log/xen/console/guest-g1.log'
  let consoleText = ''
  while (Date.now() - started < 180_000) {
    consoleText = (await conn.exec(`cat ${log} 2>/dev/null`, { allowFailure: true })).stdout
    if (/^SUPERCLOUD-GUEST-(READY|FAILED) /m.test(consoleText)) break
    await sleep(1000)
  }
  t.comment(`guest ready line after ${Date.now() - started} ms`)
  t.match(consoleText, /^SUPERCLOUD-GUEST-READY g1\r?$/m, 'guest console (logged by xenconsoled) shows the ready line')
  t.ok(/Hypervisor detected: Xen PV/.test(consoleText), 'guest kernel runs as a Xen PV domain')

  const bridged = await conn.exec('ls /sys/class/net/xenbr0/brif')
  t.match(bridged.stdout, /^vif\d+\.0$/m, 'the guest\'s vif is in the dom0 bridge (vif-bridge hotplug script)')
  const ping = spawnSync('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '3', '-W', '5', '198.18.240.10'], { encoding: 'utf8' })
  t.equal(ping.status, 0, `the guest answers ping from the host's namespace through dom0's bridge\n${ping.stdout}${ping.stderr}`)

  const list = await conn.exec('xl list')
  const g1 = list.stdout.split('\n').find(l => l.startsWith('g1 '))
  t.match(g1 ?? '', /^g1\s+[1-9]\d*\s+128\s+1\s/, 'xl list shows g1 with 128 MiB and one vCPU')

  await conn.exec('xl mem-set g1 96m', { timeoutMs: 60_000 })
  let mem = 0
  for (let i = 0; i < 60 && mem !== 96; i++) {
    mem = Number(/^g1\s+\d+\s+(\d+)\s/m.exec((await conn.exec('xl list g1')).stdout)?.[1])
    if (mem !== 96) await sleep(1000)
  }
  t.equal(mem, 96, 'xl mem-set balloons the guest down to 96 MiB')

  await conn.exec('xl destroy g1', { timeoutMs: 60_000 })
  const after = await conn.exec('xl list')
  t.notOk(after.stdout.split('\n').some(l => l.startsWith('g1 ')), 'xl destroy removes the domain')
})
