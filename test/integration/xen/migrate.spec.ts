/**
 * Live migration between two real Xen hosts (Xen 4.17 under QEMU TCG, images/xen-host)
 * through the Xen backend's `selfMigration` (drivers/xen/migration.ts), driven over SSH as
 * the tests drive the backend (the host agent runs the same code in the dom0): both dom0s on
 * one bridge in a test namespace, a PVH guest from the tiny image with a NIC whose tap the
 * "agent" made in each dom0's xenbr0.
 *
 * 1. The receiver dies mid-stream: send rejects with a typed error, the guest still runs on
 *    the source and answers ping, the destination is clean again (its tap is back).
 * 2. The guest moves: progress events (memory copy, switchover, arrival), it arrives paused,
 *    `resume` lets it run; it is gone from the source, its vif carries the tap's name in the
 *    destination's bridge, and it answers ping at the same address.
 * 3. The shared migration cases (test/integration/hypervisor/migration.compliance.ts: cancel,
 *    a dying destination, a move held at the switchover with a marker) against the backend's
 *    `migration` member, xen1 to xen2, with a second guest (no NIC) on the same two hosts. Where
 *    Xen differs: `xl migrate` has no bandwidth cap, so for the cancel and dying-destination
 *    cases the link into xen2 is slowed (tc tbf on its tap in the namespace); it is pre-copy only
 *    (the cases ask for pre-copy or auto); the dom0s are reached over SSH (console sockets
 *    forwarded, ports picked here, not by binding on this machine).
 *
 * Heavy (two TCG machines for a few minutes), so it runs only with SC_XEN_MIGRATE=1.
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshConnection } from '../../../core/ssh.ts'
import { tbfArgs } from '../../../drivers/local/plan.ts'
import { startXenHost, type XenHost } from '../../../drivers/local/xen-host.ts'
import type { GuestDefinition, SelfMigrationProgress } from '../../../drivers/hypervisor.ts'
import { createXenBackend, sshExecutor, XenMigrationError } from '../../../drivers/xen/backend.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { buildXenHostImage } from '../../../images/xen-host/build.ts'
import { xenGuestInitrd } from '../../../images/xen-host/guest-overlay.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'
import { UnixForwards } from '../../helpers/unix-forward.ts'
import { consoleRoundTrip, pollUntil } from '../hypervisor/hypervisor.compliance.ts'
import { runMigrationCompliance } from '../hypervisor/migration.compliance.ts'

if (process.env.SC_XEN_MIGRATE !== '1') {
  t.plan(0, 'Xen-to-Xen migration: set SC_XEN_MIGRATE=1 (two TCG machines for a few minutes)')
  process.exit(0)
}

const MiB = 1024 * 1024
const prefix = `sct${randomBytes(2).toString('hex')}`
const ns = `${prefix}-xen`
const br = `${prefix}br`
registerPrefix(prefix)
const dir = mkdtempSync(join(tmpdir(), `${prefix}-xen-`))
const hosts: XenHost[] = []
const conns = new Map<string, SshConnection>()
const forwards = new UnixForwards(dir)
t.teardown(async () => {
  forwards.close()
  for (const c of conns.values()) c.close()
  await Promise.all(hosts.map(async h => { await h.stop() }))
  sweepPrefix(prefix)
  rmSync(dir, { recursive: true, force: true })
})

const guestIp = '198.18.240.10'
const ping = (): ReturnType<typeof spawnSync> =>
  spawnSync('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '3', '-W', '5', guestIp], { encoding: 'utf8' })

const imgDir = '/var/lib/sc/images/tiny'
const tap = `${prefix}g1n0`
/** The SSH connection to a dom0, opened again when it dropped (a loaded TCG dom0 can miss keepalives). */
function ssh (h: XenHost): () => Promise<SshConnection> {
  return async () => {
    const c = conns.get(h.name)
    if (c !== undefined && !c.isClosed) return c
    // A few tries: the handshake with a TCG dom0 has failed now and then (see docs/xen.md, "What is left").
    for (let i = 1; ; i++) {
      try {
        const fresh = await SshConnection.connect(h.name, h.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
        conns.set(h.name, fresh)
        return fresh
      } catch (err) {
        if (i >= 4) throw err
        t.comment(`ssh to ${h.name} failed (${(err as Error).message}), again`)
        await new Promise(resolve => setTimeout(resolve, 2000))
      }
    }
  }
}
const sh = async (s: () => Promise<SshConnection>, cmd: string): Promise<string> => (await (await s()).exec(cmd)).stdout

const def: GuestDefinition = {
  name: 'g1',
  cpus: 1,
  // The smallest the tiny image boots with as a PVH domain (64 MiB: "segment kernel too large").
  memoryBytes: 96 * MiB,
  accel: 'xen',
  boot: { kind: 'kernel', kernel: `${imgDir}/vmlinuz`, initrd: `${imgDir}/initrd.img`, append: `console=ttyS0 sc.name=g1 sc.net=eth0:${guestIp}/24` },
  disks: [],
  nics: [{ id: 'eth0', tap, mac: '02:fc:00:00:00:0a' }],
  runDir: '/run/sc/g1'
}
let xa: XenHost
let xb: XenHost
let sa: () => Promise<SshConnection>
let sb: () => Promise<SshConnection>
let a: ReturnType<typeof createXenBackend>
let b: ReturnType<typeof createXenBackend>

// Setup in before(): a failure is a test failure, and the teardown still runs.
t.before(async () => {
  execFileSync('ip', ['netns', 'add', ns])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', br, 'type', 'bridge'])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', '198.18.240.1/24', 'dev', br])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', br, 'up'])
  const key = join(dir, 'id_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'xen-test', '-f', key])
  const image = await buildXenHostImage()
  const started = Date.now()
  const [ha, hb] = await Promise.all(['xen1', 'xen2'].map(async (name, i) => {
    const h = await startXenHost({
      prefix, name, ns, image, bridge: br, tap: `${prefix}${name}`,
      // HVM + HAP for a PVH guest: Debian's Xen has no shadow paging, so PV guests have no log-dirty to migrate live.
      cpuModel: 'max,-smap',
      cpus: 2,
      xenExtra: ['dom0_vcpus_pin'],
      dir: join(dir, name),
      address: `198.18.240.${2 + i}/24`,
      tapAddress: '198.18.240.1',
      privateKeyPath: key
    })
    hosts.push(h)
    return h
  }))
  if (ha === undefined || hb === undefined) throw new Error('unreachable')
  xa = ha
  xb = hb
  t.comment(`two Xen hosts up in ${Date.now() - started} ms`)

  sa = ssh(xa)
  sb = ssh(xb)
  a = createXenBackend({ exec: sshExecutor(sa) })
  b = createXenBackend({ exec: sshExecutor(sb) })

  const tiny = await buildTinyImage()
  for (const s of [sa, sb]) {
    await sh(s, `mkdir -p ${imgDir}`)
    await (await s()).writeFile(`${imgDir}/vmlinuz`, readFileSync(tiny.kernel))
    await (await s()).writeFile(`${imgDir}/initrd.img`, await xenGuestInitrd(tiny))
    // Pin xenbr0's MAC (a bridge takes its lowest port's MAC otherwise: the dom0's address, our SSH path,
    // would change MAC as taps and vifs come and go), then the guest's tap in xenbr0, as the host agent makes it.
    await sh(s, `/usr/bin/ip link set xenbr0 address $(cat /sys/class/net/eth0/address) && /usr/bin/ip tuntap add dev ${tap} mode tap && /usr/bin/ip link set ${tap} master xenbr0 && /usr/bin/ip link set ${tap} up`)
  }

  await a.start(def)
  const booted = await pollUntil(async () => (await a.consoleTail(def.runDir, 400)).includes('SUPERCLOUD-GUEST-READY g1') ? true : undefined, 180_000)
  if (booted !== true) throw new Error(`guest did not boot on xen1:\n${await a.consoleTail(def.runDir, 30)}`)
  const first = ping()
  if (first.status !== 0) throw new Error(`guest does not answer on xen1: ${String(first.stdout)}${String(first.stderr)}`)
  t.comment('guest booted on xen1 and answers ping')
})

/** The device named `tap` in a dom0: its bridge, and whether it is (still) a tap. */
const device = async (s: () => Promise<SshConnection>): Promise<string> =>
  (await sh(s, `[ -e /sys/class/net/${tap} ] || { echo none; exit 0; }; echo "$(basename $(readlink /sys/class/net/${tap}/master)) $([ -e /sys/class/net/${tap}/tun_flags ] && echo tap || echo vif)"`)).trim()
const domains = async (s: () => Promise<SshConnection>): Promise<string[]> =>
  (await sh(s, 'xl list')).split('\n').slice(1).map(l => l.split(/\s+/)[0] ?? '').filter(n => n !== '')

t.test('the receiver dies mid-stream: send rejects with a typed error, the guest keeps running on the source', async t => {
  const { config, arrived } = await b.selfMigration.receive(def, { listenIp: xb.ip, port: 8002 })
  t.equal(await device(sb), 'none', 'the destination deleted the tap (the vif will take its name)')
  let killed = false
  const events: SelfMigrationProgress[] = []
  const sending = a.selfMigration.send('g1', def.runDir, {
    destIp: xb.ip,
    port: 8002,
    config,
    onProgress: ev => {
      events.push(ev)
      if (!killed && ev.phase === 'memory' && (ev.sentBytes ?? 0) > 8 * MiB) {
        killed = true
        void sh(sb, `kill -TERM -$(cat ${def.runDir}/migrate-recv.pid)`)
      }
    }
  })
  const err = await sending.then(() => undefined, (e: unknown) => e)
  t.ok(killed, 'the receiver was killed during the memory copy')
  t.type(err, XenMigrationError)
  t.equal((err as XenMigrationError).code, 'SC_MIGRATION_FAILED')
  t.equal((err as XenMigrationError).guestRunningHere, true, `${(err as Error).message}`)
  await t.rejects(arrived, { code: 'SC_MIGRATION_FAILED' }, 'the destination reports the failed stream too')
  t.equal((await a.status('g1', def.runDir)).state, 'running', 'still running on xen1')
  t.equal(ping().status, 0, 'still answers')
  t.same((await domains(sb)).filter(n => n.startsWith('g1')), [], 'no half-arrived domain on xen2')
  t.equal((await b.status('g1', def.runDir)).state, 'absent')
  t.equal(await device(sb), 'xenbr0 tap', 'the destination\'s tap is back in its bridge')
})

t.test('the guest moves with selfMigration: arrives paused, runs after resume, keeps its address', async t => {
  const { config, arrived } = await b.selfMigration.receive(def, { listenIp: xb.ip, port: 8002 })
  t.match(config, `vif = ["vifname=${tap},bridge=xenbr0,mac=02:fc:00:00:00:0a"]`, 'the vif takes the tap\'s name and bridge at the destination')
  const events: SelfMigrationProgress[] = []
  const result = await a.selfMigration.send('g1', def.runDir, { destIp: xb.ip, port: 8002, config, onProgress: ev => { events.push(ev) } })
  await arrived
  t.comment(`migration took ${result.totalMs} ms, ${((result.sentBytes ?? 0) / MiB).toFixed(1)} MiB sent`)
  const phases = [...new Set(events.map(e => e.phase))]
  t.same(phases.filter(p => ['memory', 'switchover', 'arrived'].includes(p)), ['memory', 'switchover', 'arrived'], `progress phases: ${phases.join(', ')}`)
  t.ok(events.some(e => e.phase === 'memory' && (e.sentBytes ?? 0) > 0), 'memory events carry bytes sent')
  t.ok((result.sentBytes ?? 0) >= def.memoryBytes * 0.9, `result counts the bytes sent (${result.sentBytes ?? 0})`)
  t.match(result.log ?? '', /Migration successful/)

  t.equal((await a.status('g1', def.runDir)).state, 'absent', 'gone from xen1')
  t.notOk((await domains(sa)).some(n => n.startsWith('g1')), 'no g1 domain of any name on xen1')
  t.equal((await b.status('g1', def.runDir)).state, 'paused', 'arrived paused on xen2')
  await b.selfMigration.resume('g1', def.runDir)
  await b.selfMigration.resume('g1', def.runDir)
  t.equal((await b.status('g1', def.runDir)).state, 'running', 'runs on xen2 after resume (twice: idempotent)')
  t.equal(await device(sb), 'xenbr0 vif', 'the device named like the tap is now the guest\'s vif, in xen2\'s bridge')
  const after = ping()
  t.equal(after.status, 0, `guest answers at the same address through xen2\n${String(after.stdout)}${String(after.stderr)}`)
  await b.destroy('g1', def.runDir)
  t.equal((await b.status('g1', def.runDir)).state, 'absent')
})

t.test('the shared migration cases (migration.compliance.ts) through the backend\'s migration, xen1 to xen2', async t => {
  const name = `${prefix}-c1`
  // Same size as g1, no NIC: the cases talk to it on its console.
  const cdef: GuestDefinition = {
    ...def,
    name,
    boot: { kind: 'kernel', kernel: `${imgDir}/vmlinuz`, initrd: `${imgDir}/initrd.img`, append: `console=ttyS0 sc.name=${name}` },
    nics: [],
    runDir: `/run/sc/${name}`
  }
  let nextPort = 8010
  await runMigrationCompliance(t, {
    backend: a,
    name,
    def: cdef,
    ready: `SUPERCLOUD-GUEST-READY ${name}`,
    bootTimeoutMs: 180_000,
    consolePath: async p => await forwards.forward(sa, p),
    roundTrip: consoleRoundTrip,
    pollUntil
  }, {
    target: b,
    // Another host: the same runDir there.
    makeTargetDefinition: () => cdef,
    listenIp: xb.ip,
    // The listener is in xen2's dom0: a port there, not one found free on this machine.
    port: async () => nextPort++,
    targetConsoleSocket: async p => await forwards.forward(sb, p),
    // xl migrate has no bandwidth cap (migrateOut ignores `bandwidth`): slow the link into xen2
    // instead, the egress of its tap in the namespace; SSH to xen2 shares it (small, it still gets through).
    slowLink: async bytesPerSecond => {
      execFileSync('ip', ['netns', 'exec', ns, ...tbfArgs(xb.tap, bytesPerSecond * 8)])
      const since = Date.now()
      return async () => {
        const q = JSON.parse(execFileSync('ip', ['netns', 'exec', ns, 'tc', '-s', '-j', 'qdisc', 'show', 'dev', xb.tap], { encoding: 'utf8' })) as Array<{ kind?: string, bytes?: number, drops?: number }>
        const tbf = q.find(x => x.kind === 'tbf')
        t.comment(`link into xen2 slowed to ${bytesPerSecond} B/s for ${Date.now() - since} ms: ${tbf?.bytes ?? '?'} bytes passed, ${tbf?.drops ?? '?'} dropped`)
        execFileSync('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', xb.tap, 'root'])
      }
    }
  })
})
