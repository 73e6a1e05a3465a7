/**
 * `up` never loses data unasked (issue 15), with the in-memory cloud and agents of mem.ts and
 * the real planner, state store and controller: a plan that destroys a disk is refused
 * (SC_PLAN_DESTROYS_DATA, naming it) unless confirmed or `--yes`, and changes nothing; a cpus
 * change stops and starts the guest (its disks stay) instead of destroying it; a changed host
 * migrates it; `--replace` replaces it.
 */
import t, { type Test } from 'tap'
import { PlanDestroysDataError } from '../../../blanket-manager/planner/changes.ts'
import type { Spec } from '../../../core/spec.ts'
import { Bench, twoHosts } from './mem.ts'

function spec (db1: { host?: string, cpus?: number, disks?: string }): Spec {
  return twoHosts({
    db1: { host: db1.host ?? 'h1', cpus: db1.cpus ?? 1, disks: db1.disks ?? '[ { name: data, size: 64M } ]' },
    web1: { host: 'h2' }
  })
}

/** A bench with db1 (a 64M disk) on h1 and web1 on h2 up; `calls` lists the guest calls made since, in order. */
async function started (t: Test): Promise<{ b: Bench, calls: () => string[] }> {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  await b.controller().up(spec({}))
  const all: string[] = []
  for (const h of b.cloud.hosts.values()) {
    const push = h.calls.push.bind(h.calls)
    h.calls.push = (...xs: string[]): number => { all.push(...xs); return push(...xs) }
  }
  return { b, calls: () => all.filter(c => /^(createVm|destroyVm|stopVm|updateVm|prepareIncoming|migrateOut)/.test(c)) }
}

t.test('a removed disk: refused without --yes, naming the disk; nothing changes', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  const err = await c.up(spec({ disks: '[]' })).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof PlanDestroysDataError)
  t.equal((err as PlanDestroysDataError).code, 'SC_PLAN_DESTROYS_DATA')
  t.match((err as Error).message, /disk data \(64 MiB\) of db1/)
  t.same(calls(), [], 'no guest touched')
  t.equal(c.store.vm('db1')?.record?.disks?.length, 1, 'the state still has the disk')
})

t.test('a removed disk: a terminal that says no changes nothing, one that says yes replaces', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  let asked: string[] = []
  const no = await c.up(spec({ disks: '[]' }), { confirm: async lost => { asked = lost; return false } }).then(() => undefined, (e: unknown) => e)
  t.ok(no instanceof PlanDestroysDataError)
  t.match((no as Error).message, /not confirmed/)
  t.same(asked, ['disk data (64 MiB) of db1'], 'asked about the disk')
  t.same(calls(), [])
  await c.up(spec({ disks: '[]' }), { confirm: async () => true })
  t.same(calls(), ['destroyVm db1', 'createVm db1'], 'replaced once agreed')
  t.same(c.store.vm('db1')?.record?.disks, [])
})

t.test('cpus 1 -> 2: changed live (hot-plug), never stopped or destroyed; no confirmation needed', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  const r = await c.up(spec({ cpus: 2 }))
  t.same(r.plan, ['~ vm db1 on h1  (cpus 1 -> 2: live, no reboot)'])
  t.same(calls(), ['updateVm db1 cpus=2 memory=134217728 disks=data'])
  t.ok(c.store.vm('db1')?.record?.plugged !== undefined, 'what was plugged is recorded (a migration launches the same)')
  t.equal(c.store.vm('db1')?.record?.cpus, 2)
  t.same((await c.plan(spec({ cpus: 2 }))).actions, [], 'converged')
})

t.test('a changed host: migrated, not re-created', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  const r = await c.up(spec({ host: 'h2' }))
  t.same(r.plan, ['> vm db1 h1 -> h2  (host changed: live migration with its disks)'])
  t.same(calls().filter(x => !x.startsWith('destroyVm')), ['prepareIncoming db1', 'migrateOut db1'], 'a live migration')
  t.equal(c.store.vm('db1')?.host, 'h2')
  t.same(b.cloud.host('h2').running(), ['db1', 'web1'])
  t.same((await c.plan(spec({ host: 'h2' }))).actions, [], 'converged')
})

t.test('--replace vm/db1 needs --yes, then replaces', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  const err = await c.up(spec({}), { replace: ['db1'] }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof PlanDestroysDataError)
  t.same(calls(), [])
  await c.up(spec({}), { replace: ['db1'], yes: true })
  t.same(calls(), ['destroyVm db1', 'createVm db1'])
  const bad = await c.up(spec({}), { replace: ['nope'] }).then(() => undefined, (e: unknown) => e)
  t.match((bad as { code?: string }).code, 'SC_USAGE')
})

t.test('resize: vCPUs and memory changed live and recorded; an up whose spec says the same changes nothing; what cannot be live is refused', async t => {
  const { b, calls } = await started(t)
  const c = b.controller()
  t.equal(await c.resize(spec({}), 'db1', { cpus: 2, memoryBytes: 256 * 1024 * 1024 }), '~ vm db1 on h1  (cpus 1 -> 2, memory 128 MiB -> 256 MiB: live, no reboot)')
  t.same(calls(), ['updateVm db1 cpus=2 memory=268435456 disks=data'], 'one live update, no stop')
  t.equal(c.store.vm('db1')?.record?.cpus, 2)
  t.same((await c.plan(twoHosts({ db1: { host: 'h1', cpus: 2, memory: '256M', disks: '[ { name: data, size: 64M } ]' }, web1: { host: 'h2' } }))).actions, [], 'the spec edited to match: nothing to change')
  const down = await c.resize(spec({}), 'db1', { cpus: 1 }).then(() => undefined, (e: unknown) => e)
  t.match((down as { code?: string }).code, 'SC_LIVE_UPDATE_UNSUPPORTED')
  t.match((down as Error).message, /cpus 2 -> 1: vCPUs are not unplugged live.*nothing was changed/)
  t.equal(calls().length, 1, 'nothing else was called')
})
