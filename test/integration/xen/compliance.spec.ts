/**
 * The Xen backend (drivers/xen) against a real Xen: one Xen host (Xen 4.17 under QEMU TCG,
 * images/xen-host, `-cpu max,-smap` for PVH) in a test namespace; the backend drives `xl`
 * in its dom0 over SSH (the host agent runs the same class with the local executor).
 * Runs the shared hypervisor compliance suite, then a guest with a NIC: the vif takes the
 * name of the tap that was in a dom0 bridge, lands in that bridge, and the guest answers ping.
 * Four PVH boots under TCG: about 1-2 minutes on a quiet machine, up to 5 under load. Part of
 * the suite (CI runs it); SC_XEN_COMPLIANCE=0 skips it.
 *
 * The suite's migration cases (`migration`, migration.compliance.ts) are not run here: they need
 * a second Xen host (a guest cannot migrate to its own dom0: the names collide), and booting
 * two TCG Xen hosts and moving a guest takes 3-5 minutes. They run in
 * test/integration/xen/migrate.spec.ts (opt-in, SC_XEN_MIGRATE=1), on its two hosts; Xen-to-Xen
 * migration is also tested by test/e2e/xen/xen.spec.ts (through the agents).
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshConnection } from '../../../core/ssh.ts'
import { startXenHost, type XenHost } from '../../../drivers/local/xen-host.ts'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { createXenBackend, sshExecutor, xenProcessesMentioning, XenGuestDefinitionError } from '../../../drivers/xen/backend.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { xenGuestInitrd } from '../../../images/xen-host/guest-overlay.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'
import { UnixForwards } from '../../helpers/unix-forward.ts'
import { pollUntil, runHypervisorCompliance } from '../hypervisor/hypervisor.compliance.ts'

if (process.env.SC_XEN_COMPLIANCE === '0') {
  t.plan(0, 'Xen backend compliance: skipped (SC_XEN_COMPLIANCE=0)')
  process.exit(0)
}

const MiB = 1024 * 1024
const prefix = `sct${randomBytes(2).toString('hex')}`
const ns = `${prefix}-xen`
registerPrefix(prefix)
const dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
let host: XenHost | undefined
let conn: SshConnection | undefined
const forwards = new UnixForwards(dir)
t.teardown(async () => {
  forwards.close()
  conn?.close()
  await host?.stop().catch(() => {})
  sweepPrefix(prefix)
  rmSync(dir, { recursive: true, force: true })
})

execFileSync('ip', ['netns', 'add', ns])
const key = join(dir, 'id_ed25519')
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'xen-test', '-f', key])
host = await startXenHost({
  prefix, name: 'xen1', ns, dir: join(dir, 'xen1'),
  address: '198.18.240.2/24', tapAddress: '198.18.240.1', privateKeyPath: key,
  cpuModel: 'max,-smap',
  // dom0 alone on CPU 0, guests on CPU 1 (the backend's affinity): see docs/xen.md, CPU placement.
  cpus: 2,
  xenExtra: ['dom0_vcpus_pin']
})
t.comment(`Xen host up in ${host.timings.sshMs} ms`)
const xen = host
conn = await SshConnection.connect('xen1', xen.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
/** The SSH connection to the dom0, opened again when it dropped (a loaded TCG dom0 can miss keepalives). */
async function ssh (): Promise<SshConnection> {
  if (conn === undefined || conn.isClosed) conn = await SshConnection.connect('xen1', xen.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
  return conn
}
const c = { exec: async (cmd: string) => await (await ssh()).exec(cmd), writeFile: async (p: string, d: Buffer) => { await (await ssh()).writeFile(p, d) } }
const exec = sshExecutor(ssh)
const backend = createXenBackend({ exec })

const tiny = await buildTinyImage()
const imgDir = '/var/lib/sc/images/tiny'
await c.exec(`mkdir -p ${imgDir}`)
// The kernel as the controller places it on Xen hosts (launch.ts): the ELF, sent gzip'ed and
// unpacked in the dom0 (xl create loads it in 2 s; the bzImage took 14-18 s of xz in the dom0).
const kernel = tiny.pvh !== undefined ? `${imgDir}/vmlinux` : `${imgDir}/vmlinuz`
if (tiny.pvh !== undefined) {
  await c.writeFile(`${imgDir}/vmlinux.gz`, readFileSync(tiny.pvh.gz))
  await c.exec(`gunzip -f ${imgDir}/vmlinux.gz`)
} else {
  await c.writeFile(kernel, readFileSync(tiny.kernel))
}
await c.writeFile(`${imgDir}/initrd.img`, await xenGuestInitrd(tiny))

/**
 * `quiet` as the host agent's guests have it (images/guest guestCmdline): without it, every
 * kernel message crosses the emulated dom0's xenconsoled, and a guest boot took ~69 s instead
 * of ~35 s (measured under TCG, one guest alone on a Xen host).
 */
function xenGuest (name: string, over: Partial<GuestDefinition> = {}): GuestDefinition {
  return {
    name,
    cpus: 1,
    // The tiny image runs from its initramfs: half of 256 MiB is the lowest the compliance balloon goes.
    memoryBytes: 256 * MiB,
    accel: 'xen',
    boot: { kind: 'kernel', kernel, initrd: `${imgDir}/initrd.img`, append: `console=ttyS0 quiet sc.name=${name}` },
    disks: [],
    nics: [],
    runDir: `/run/sc/${name}`,
    ...over
  }
}

t.test('version and detectAccel report the Xen host', async t => {
  t.match(await backend.version(), /^4\.17/, 'Xen 4.17')
  const accel = await backend.detectAccel({ kernel: '', initrd: '', readyMarker: '', timeoutMs: 0, runDir: '/run/sc/probe' })
  t.equal(accel.mode, 'xen')
  t.match(accel.reason, /virt_caps: .*hvm.*hap/, `reason: ${accel.reason}`)
})

t.test('compliance', async t => {
  await runHypervisorCompliance(t, {
    backend,
    prefix,
    makeDefinition: name => xenGuest(name),
    processesMentioning: async text => (await xenProcessesMentioning(exec, text)).map(p => p.pid),
    localConsoleSocket: async remote => await forwards.forward(ssh, remote)
  })
})

t.test('a NIC: the vif takes the tap\'s name and bridge, the guest answers ping; a balloon target applies at start', async t => {
  const name = `${prefix}-n1`
  const tap = `${prefix}t0`
  // As the host agent does: a tap in the guest bridge (here the dom0's xenbr0, which holds its uplink).
  // Pin xenbr0's MAC first: a bridge otherwise takes its lowest port MAC, and the dom0's own
  // address (our SSH path) would change MAC when the tap joins and the vif replaces it.
  await c.exec(`/usr/bin/ip link set xenbr0 address $(cat /sys/class/net/eth0/address) && /usr/bin/ip tuntap add dev ${tap} mode tap && /usr/bin/ip link set ${tap} master xenbr0`)
  // No default bridge to fall back on: the vif can only land in xenbr0 because the tap was there.
  const strict = createXenBackend({ exec, defaultBridge: 'nosuchbr0' })
  const def = xenGuest(name, {
    nics: [{ id: 'eth0', tap, mac: '02:fc:00:00:01:0a' }],
    balloonTargetBytes: 192 * MiB,
    boot: { kind: 'kernel', kernel, initrd: `${imgDir}/initrd.img`, append: `console=ttyS0 quiet sc.name=${name} sc.net=eth0:198.18.240.10/24` }
  })
  t.teardown(async () => { await strict.destroy(name, def.runDir).catch(() => {}) })
  const st = await strict.start(def)
  t.equal(st.state, 'running')
  const booted = await pollUntil(async () => (await strict.consoleTail(def.runDir, 400)).includes(`SUPERCLOUD-GUEST-READY ${name}`) ? true : undefined, 180_000)
  t.ok(booted, 'guest booted')
  if (booted !== true) t.comment(`guest console:\n${await strict.consoleTail(def.runDir, 4000).catch(e => String(e))}\nxl list:\n${(await c.exec('xl list').catch(e => ({ stdout: String(e) }))).stdout}`)
  const master = await c.exec(`basename $(readlink /sys/class/net/${tap}/master); cat /sys/class/net/${tap}/tun_flags 2>/dev/null || echo not-a-tap`)
  t.same(master.stdout.trim().split('\n'), ['xenbr0', 'not-a-tap'], `the device named ${tap} is now the guest's vif, in xenbr0`)
  const ping = spawnSync('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '3', '-W', '5', '198.18.240.10'], { encoding: 'utf8' })
  t.equal(ping.status, 0, `guest answers ping through its vif\n${ping.stdout}${ping.stderr}`)
  const stats = await pollUntil(async () => {
    const s = await strict.stats(name, def.runDir)
    return s.balloonActualBytes <= 192 * MiB ? s : undefined
  }, 60_000)
  t.ok(stats !== undefined, 'balloon target from the definition was applied')
  t.equal(stats?.memoryBytes, 256 * MiB)
  await strict.destroy(name, def.runDir)
  t.equal((await strict.status(name, def.runDir)).state, 'absent')
  const gone = await c.exec(`[ -e /sys/class/net/${tap} ] && echo present || echo gone`)
  t.equal(gone.stdout.trim(), 'gone', 'the vif went away with the domain')
})

t.test('what Xen guests cannot have is refused with a typed error', async t => {
  const name = `${prefix}-bad`
  await t.rejects(backend.start(xenGuest(name, { disks: [{ id: 'd', path: '/tmp/x.qcow2', format: 'qcow2' }] })), XenGuestDefinitionError, 'qcow2 disk')
  await t.rejects(backend.start(xenGuest(name, { boot: { kind: 'kernel', kernel: '/nonexistent/vmlinuz', append: '' } })), { code: 'SC_GUEST_START' }, 'missing kernel')
  t.equal((await backend.status(name, '/run/sc/bad')).state, 'absent')
})
