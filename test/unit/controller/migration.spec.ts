/**
 * `migrate` and its recovery with an in-memory cloud and agents (test/unit/controller/mem.ts):
 * the real controller parts, state store and planner; only the hosts are in memory.
 */
import t from 'tap'
import type { Test } from 'tap'
import { AgentError, CancelledError, SupercloudError } from '../../../core/errors.ts'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Bench, twoHosts, type MemHost } from './mem.ts'

async function started (t: Test): Promise<{ b: Bench, h1: MemHost, h2: MemHost, spec: ReturnType<typeof twoHosts> }> {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const spec = twoHosts({ web: { host: 'h1' }, db: { host: 'h2' } })
  const c = b.controller()
  await c.up(spec)
  c.close()
  return { b, h1: b.cloud.host('h1'), h2: b.cloud.host('h2'), spec }
}

t.test('a migration moves the VM, and the next up keeps it there', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  const r = await c.migrate(spec, 'web', 'h2')
  t.equal(r.from, 'h1')
  t.equal(r.to, 'h2')
  t.same(h1.running(), [])
  t.same(h2.running(), ['db', 'web'])
  const row = c.store.vm('web')
  t.equal(row?.host, 'h2')
  t.equal(row?.status, 'ready')
  t.equal(row?.record?.host, 'h2')
  t.same(c.overrides(), { web: { host: 'h2', specHost: 'h1' } })
  t.equal(c.state.migration('web'), undefined, 'no migration record left')
  t.same((await c.plan(spec)).actions, [], 'up leaves it on h2')
})

t.test('the destination refuses the incoming VM: it stays on the source, the state is unchanged, the error is typed', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  const before = c.store.vm('web')
  h2.faults.refuseIncoming = new AgentError('SC_MIGRATION_DEST_BUSY', 'h2: a guest named web already exists on this host')
  const err = await c.migrate(spec, 'web', 'h2').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof SupercloudError, 'a SupercloudError')
  t.equal((err as SupercloudError).code, 'SC_MIGRATION_DEST_BUSY')
  const row = c.store.vm('web')
  t.equal(row?.host, 'h1')
  t.equal(row?.status, 'ready')
  t.same(row?.record, before?.record)
  t.equal(row?.specHash, before?.specHash)
  t.same(c.overrides(), {}, 'no placement change')
  t.equal(c.state.migration('web'), undefined, 'no migration record left')
  t.same(h1.running(), ['web'], 'it runs on the source')
  t.same([...h2.guests.keys()], ['db'], 'no copy on the destination')
  t.same([...h1.calls, ...h2.calls].filter(x => x.startsWith('destroyVm') || x.startsWith('migrateOut')), [], 'nothing destroyed, nothing streamed')
  t.same((await c.plan(spec)).actions, [], 'up has nothing to do')
  t.ok(c.store.journalSince(0).some(j => j.kind === 'migration.failed' && j.subject === 'web'))
})

t.test('cancel during the stream: the VM stays on the source, the destination copy is removed', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  const ac = new AbortController()
  h1.faults.holdStream = () => { ac.abort() }
  const err = await c.migrate(spec, 'web', 'h2', { signal: ac.signal }).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof CancelledError, 'a CancelledError')
  t.equal((err as CancelledError).code, 'SC_CANCELLED')
  const row = c.store.vm('web')
  t.equal(row?.host, 'h1')
  t.equal(row?.status, 'ready')
  t.same(c.overrides(), {})
  t.equal(c.state.migration('web'), undefined)
  t.same(h1.running(), ['web'], 'it runs on the source')
  t.same([...h2.guests.keys()], ['db'], 'the destination copy is gone')
  t.ok(h2.calls.includes('destroyVm web'), 'the destination was asked to remove it')
  t.notOk(h1.calls.includes('destroyVm web'), 'the source copy was not touched')
  t.ok(c.store.journalSince(0).some(j => j.kind === 'migration.cancelled' && j.subject === 'web'))
  t.same((await c.plan(spec)).actions, [], 'up has nothing to do')
})

t.test('cancel from another process (migrate --cancel) ends the same way', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  const other = b.controller()
  h1.faults.holdStream = vm => { void other.cancelMigration(vm) }
  const err = await c.migrate(spec, 'web', 'h2').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof CancelledError)
  t.equal(c.store.vm('web')?.host, 'h1')
  t.equal(c.store.vm('web')?.status, 'ready')
  t.same(h1.running(), ['web'])
  t.same([...h2.guests.keys()], ['db'])
})

t.test('a controller that died mid-migration: the next up finishes a switched move, or rolls back one that was not', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  // web switched to h2 (its copy there runs, the source copy stopped); db had not (its source runs, h1 holds an incoming copy).
  const web = c.store.vm('web')
  const db = c.store.vm('db')
  if (web === undefined || db === undefined) throw new Error('no rows')
  c.store.putVm({ ...web, status: 'migrating' })
  c.store.putVm({ ...db, status: 'migrating' })
  c.state.setMigration('web', { from: 'h1', to: 'h2', mode: 'auto', id: 'abcdef012345', startedAt: '' })
  c.state.setMigration('db', { from: 'h2', to: 'h1', mode: 'auto', id: 'abcdef012346', startedAt: '' })
  h1.guests.set('web', { state: 'shutdown', detail: 'migrated' })
  h2.guests.set('web', { state: 'paused', detail: 'running' })
  h1.guests.set('db', { state: 'paused', detail: 'incoming' })
  c.close()

  const c2 = b.controller()
  await c2.up(spec)
  t.equal(c2.store.vm('web')?.host, 'h2', 'web: the move is finished')
  t.equal(c2.store.vm('web')?.status, 'ready')
  t.same(c2.overrides().web, { host: 'h2', specHost: 'h1' })
  t.equal(c2.store.vm('db')?.host, 'h2', 'db: rolled back to its source')
  t.equal(c2.store.vm('db')?.status, 'ready')
  t.same(h1.running(), [])
  t.same([...h1.guests.keys()], [], 'both stale copies on h1 are removed')
  t.same(h2.running(), ['db', 'web'])
  t.equal(c2.state.migration('web'), undefined)
  t.equal(c2.state.migration('db'), undefined)
})

t.test('the connection to the destination drops after the switch: the move completes on a new connection and the record says where the VM runs', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  t.teardown(() => c.close())
  h2.faults.dropConnectionOn = 'finishIncoming'
  const r = await c.migrate(spec, 'web', 'h2')
  t.equal(r.to, 'h2', 'migrate reports the move done')
  t.same(h2.running(), ['db', 'web'], 'the VM runs on h2')
  t.same(h1.running(), [], 'and no more on h1')
  const row = c.store.vm('web')
  t.equal(row?.host, 'h2')
  t.equal(row?.status, 'ready', 'recorded ready on h2, not failed')
  t.equal(c.state.migration('web'), undefined, 'no migration record left')
  t.same((await c.plan(spec)).actions, [], 'up has nothing to do')
})

t.test('every migration runs over TLS: both hosts get the same key, drawn for that migration alone and kept nowhere', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  t.teardown(() => c.close())
  await c.migrate(spec, 'web', 'h2')
  await c.migrate(spec, 'web', 'h1')
  type Tls = { identity: string, key: string }
  t.same(h1.tls.map(x => x.call), ['migrateOut', 'prepareIncoming'], 'h1: source of the first move, destination of the second')
  t.same(h2.tls.map(x => x.call), ['prepareIncoming', 'migrateOut'], 'h2: destination of the first move, source of the second')
  const [out1, in2] = h1.tls.map(x => x.tls as Tls)
  const [in1, out2] = h2.tls.map(x => x.tls as Tls)
  t.same(out1, in1, 'source and destination of the first move hold the same credentials')
  t.same(out2, in2, 'and of the second')
  t.match(out1, { identity: /^h1\.[0-9a-f]{12}$/, key: /^[0-9a-f]{64}$/ }, 'identity names the source host and the migration; a 32-byte key')
  t.match(out2, { identity: /^h2\.[0-9a-f]{12}$/, key: /^[0-9a-f]{64}$/ })
  t.not(out2?.key, out1?.key, 'the return move has a key of its own')
  t.notOk(out1 !== undefined && 'x509' in out1, 'between QEMU hosts no x509 pair is drawn (only Xen\'s socat stream needs one)')
  // The keys are in no journal entry and not in the state directory.
  const keys = [out1?.key ?? 'x', out2?.key ?? 'x']
  const journal = JSON.stringify(c.store.journalSince(0))
  t.notOk(keys.some(k => journal.includes(k)), 'not journaled')
  const stored = readdirSync(b.dir).map(f => { try { return readFileSync(join(b.dir, f)).toString('latin1') } catch { return '' } }).join('')
  t.ok(stored.length > 0, 'the state directory was read')
  t.notOk(keys.some(k => stored.includes(k)), 'not in the state directory')
})

t.test('clearText (benchmarks only) asks both hosts for clear text explicitly', async t => {
  const { b, h1, h2, spec } = await started(t)
  const c = b.controller()
  t.teardown(() => c.close())
  await c.migrate(spec, 'web', 'h2', { clearText: true })
  t.same([...h1.tls, ...h2.tls].map(x => x.tls), ['off', 'off'])
})
