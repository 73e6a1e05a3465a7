/**
 * The agent's overload loop around a migration (AgentOverdriver with real swap exports, driven
 * by a real NBD client; the test calls tick() with explicit times, the loop runs no timer): a migration decided and never carried out is decided again when the controller
 * reconfigures (same policy) or when it times out; a guest whose QEMU was started with
 * `-incoming` is not judged on its swap I/O until its arrival is reported, and then only
 * after a grace period.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentOverdriver, startedIncoming } from '../../../blanket-manager/agent/overdriver-host.ts'
import type { VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import type { ControllerPolicy } from '../../../overdriver/decision/decide.ts'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import { SWAP_EXPORT_NAME } from '../../../overdriver/swap-service.ts'
import { prefix, tempDir } from './helpers.ts'

const MiB = 1024 * 1024
const I = 1000
const policy: ControllerPolicy = { intervalMs: I, overloadOpsPerSec: 50, window: { size: 6, sustained: 4 }, initialThresholdMs: 600_000, adaptive: { enabled: false, baseCount: 10 }, quietIntervals: 3 }
const hosts = [{ name: 'host-a', migrationSpaceBytes: 0 }, { name: 'host-b', migrationSpaceBytes: 1024 * MiB }]

function launch (name: string): VmLaunch {
  return { name, cpus: 1, memory: { requestedBytes: 256 * MiB, allocatedBytes: 128 * MiB }, image: { kind: 'kernel', kernel: '/nonexistent' }, disks: [], nics: [], swap: { sizeBytes: 16 * MiB }, bootTimeoutMs: 1000 }
}

interface Harness { od: AgentOverdriver, events: Array<Record<string, unknown>>, page: () => Promise<void>, tick: () => Promise<Array<Record<string, unknown>>> }

async function harness (t: { teardown: (f: () => void | Promise<void>) => void }, vm: string, dir: string): Promise<Harness> {
  const od = new AgentOverdriver(dir, { autoTick: false })
  t.teardown(async () => { await od.stop() })
  await mkdir(join(dir, vm), { recursive: true })
  const sock = await od.startSwap(launch(vm))
  const nbd = await NbdClient.connect({ path: sock }, SWAP_EXPORT_NAME)
  t.teardown(async () => { await nbd.close().catch(() => {}) })
  const events: Array<Record<string, unknown>> = []
  od.subscribe(ev => events.push(ev))
  od.configure({ host: 'host-a', policy: { ...policy, migrationTimeoutMs: 3_600_000 }, hosts })
  let now = Date.now()
  const buf = Buffer.alloc(4096 * 100, 7)
  return {
    od,
    events,
    // 100 pages written: 100 paging ops per 1 s interval, above the 50 ops/s threshold.
    page: async () => { await nbd.write(0, buf) },
    tick: async () => { const n = events.length; now += I; await od.tick(now); return events.slice(n) }
  }
}

const decidedIn = (evs: Array<Record<string, unknown>>): boolean => evs.some(e => e.type === 'overload.migration-decided')

t.test('a decided migration nobody carries out: decided again after a reconfigure with the same policy, and after the timeout', async t => {
  const dir = tempDir(t, 'lifecycle')
  const vm = `${prefix}a`
  const h = await harness(t, vm, dir)
  const seen: boolean[] = []
  // No QEMU pidfile: after a few ticks the VM counts as created here and is observed.
  for (let i = 0; i < 12; i++) { await h.page(); seen.push(decidedIn(await h.tick())) }
  const first = seen.indexOf(true)
  t.ok(first > 0, `a migration was decided (at tick ${first})`)
  t.equal(seen.filter(Boolean).length, 1, 'once: the agent treats it as under way')
  t.match(h.events.find(e => e.type === 'overload.migration-decided'), { vm, data: { target: 'host-b' } })

  // The controller (a new `serve`) configures the loop with the same policy: it knows of no migration.
  h.od.configure({ host: 'host-a', policy: { ...policy, migrationTimeoutMs: 3_600_000 }, hosts })
  await h.page()
  t.ok(decidedIn(await h.tick()), 'decided again at the next interval after the reconfigure')

  // A reported failure lets it decide again at once.
  await h.page(); t.notOk(decidedIn(await h.tick()), 'under way: not decided again')
  h.od.migrationDone(vm, false)
  await h.page(); t.ok(decidedIn(await h.tick()), 'after a failure report: decided again')

  // With a short timeout (a new policy: the loop starts afresh), an unreported migration expires and is decided again.
  h.od.configure({ host: 'host-a', policy: { ...policy, migrationTimeoutMs: 3 * I }, hosts })
  const again: boolean[] = []
  for (let i = 0; i < 12; i++) { await h.page(); again.push(decidedIn(await h.tick())) }
  const at = again.map((d, i) => d ? i : -1).filter(i => i >= 0)
  t.same(at, [3, 7, 11], 'decided at the 4th overloaded interval (4 of 6), then again each time the 3-interval timeout passed')
})

t.test('an incoming guest is not judged until its arrival is reported, then after a grace period', async t => {
  const dir = tempDir(t, 'incoming')
  const vm = `${prefix}b`
  // A process whose command line carries -incoming stands in for the destination's QEMU (only its argv is read).
  const fake = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 600000)', '--', '-incoming', 'defer'], { stdio: 'ignore' })
  t.teardown(() => { fake.kill() })
  await mkdir(join(dir, vm, 'run'), { recursive: true })
  await writeFile(join(dir, vm, 'run', 'qemu.pid'), `${fake.pid ?? 0}\n`)
  t.equal(await startedIncoming(join(dir, vm, 'run')), true, 'the pidfile names a process started with -incoming')
  t.equal(await startedIncoming(join(dir, 'nothing', 'run')), undefined, 'no pidfile: unknown')

  const h = await harness(t, vm, dir)
  for (let i = 0; i < 15; i++) { await h.page(); t.same(await h.tick(), [], `tick ${i}: the move's swap I/O is not judged`) }

  // `serve` reports the arrival on the destination (overdriver.migrated) after deflating the balloon.
  h.od.setAllocated(vm, 256 * MiB)
  h.od.setAllocated(vm, 128 * MiB) // (back to the ballooned view, so an overload here would still count)
  h.od.migrationDone(vm, true)
  const after: Array<Array<Record<string, unknown>>> = []
  for (let i = 0; i < 10; i++) { await h.page(); after.push(await h.tick()) }
  t.same(after.slice(0, 4).flat(), [], 'the arrival interval and 3 grace intervals are not observed')
  t.match(after[4], [{ type: 'overload.started', vm }], 'then a fresh episode starts')
  const at = after.findIndex(decidedIn)
  t.ok(at === -1 || at >= 4 + 3, `no decision before ${policy.window.sustained} fresh overloaded intervals (decided at ${at})`)
})
