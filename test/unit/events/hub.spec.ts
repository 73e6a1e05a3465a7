import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { EventHub, EventRejectedError, SlowConsumerError, ingestAgentEvents, type SubscriptionItem } from '../../../blanket-manager/events/hub.ts'
import type { EventInput, SupercloudEvent } from '../../../blanket-manager/events/schema.ts'

function fresh (t: Test): StateStore {
  const dir = mkdtempSync(join(tmpdir(), 'sc-events-'))
  const store = StateStore.open(dir)
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  return store
}

const stats = (vm: string, rate: number): EventInput => ({ type: 'vm.stats', host: 'host-a', vm, data: { residentBytes: 1, balloonBytes: 2, pagingRate: rate } })
const seqs = (items: Array<SubscriptionItem | undefined>): number[] => items.map(i => (i?.kind === 'event' ? i.event.seq : -1))

t.test('publish assigns increasing seq, schema and ts', async t => {
  const hub = new EventHub(fresh(t))
  const a = hub.publish({ type: 'host.created', host: 'host-a', data: { site: 's1', driver: 'local' } })
  const b = hub.publish({ type: 'host.ready', host: 'host-a', data: { accel: 'tcg' } })
  t.equal(a.schema, 1)
  t.equal(b.seq, a.seq + 1)
  t.ok(Date.parse(a.ts) > 0)
  t.same(hub.list(0).map(e => e.type), ['host.created', 'host.ready'])
  t.same(hub.list(a.seq).map(e => e.seq), [b.seq], 'list after a seq')
})

t.test('two hubs on one supercloud (two processes) share one order, and follow() delivers the other one\'s events', async t => {
  const store = fresh(t)
  const other = StateStore.open(store.dir)
  t.teardown(() => other.close())
  const serve = new EventHub(store)
  const cli = new EventHub(other)
  const sub = serve.subscribe()
  cli.publish({ type: 'vm.running', host: 'h', vm: 'v1', data: {} })
  serve.publish({ type: 'vm.running', host: 'h', vm: 'v2', data: {} })
  cli.publish({ type: 'vm.running', host: 'h', vm: 'v3', data: {} })
  serve.pump()
  const got = sub.takeReady(10)
  t.same(got.map(i => (i.kind === 'event' ? i.event.vm : '')), ['v1', 'v2', 'v3'], 'seq order across processes, nothing missing')
  t.same(seqs(got), [1, 2, 3])
  serve.close()
  cli.close()
})

t.test('subscribe replays from a seq, then continues live without gap or duplicate', async t => {
  const hub = new EventHub(fresh(t), { pageSize: 4 })
  for (let i = 0; i < 10; i++) hub.publish(stats('v', i))
  const sub = hub.subscribe({ since: 3 })
  t.notOk(sub.live, 'replaying')
  const first = await sub.next()
  t.same(seqs([first]), [4])
  hub.publish(stats('v', 10)) // seq 11 arrives while replay is still going
  const rest = sub.takeReady(100)
  t.same(seqs(rest), [5, 6, 7, 8, 9, 10, 11])
  t.ok(sub.live)
  hub.publish(stats('v', 11))
  t.same(seqs([await sub.next()]), [12])
  const waiting = sub.next()
  hub.publish(stats('v', 12))
  t.same(seqs([await waiting]), [13], 'a waiting reader gets the next live event')
  t.equal(sub.cursor, 13)
})

t.test('subscribe without since is live only; filters by vm, host and type', async t => {
  const hub = new EventHub(fresh(t))
  hub.publish(stats('old', 1))
  const all = hub.subscribe()
  const onlyB = hub.subscribe({ vm: 'b', since: 0 })
  const noStats = hub.subscribe({ types: ['!vm.stats'], since: 0 })
  const overloads = hub.subscribe({ types: ['overload.*'] })
  hub.publish(stats('a', 1))
  hub.publish(stats('b', 1))
  hub.publish({ type: 'overload.started', host: 'host-a', vm: 'b', data: { pagingRate: 9, threshold: 5 } })
  t.same(all.takeReady(10).map(i => i.kind === 'event' && i.event.vm), ['a', 'b', 'b'])
  t.same(onlyB.takeReady(10).map(i => i.kind === 'event' && i.event.type), ['vm.stats', 'overload.started'])
  t.same(noStats.takeReady(10).map(i => i.kind === 'event' && i.event.type), ['overload.started'])
  t.same(overloads.takeReady(10).map(i => i.kind === 'event' && i.event.type), ['overload.started'])
})

t.test('history is bounded; a resume from a pruned seq is told about the gap', async t => {
  const store = fresh(t)
  const hub = new EventHub(store, { history: 5 })
  for (let i = 0; i < 12; i++) hub.publish(stats('v', i))
  t.same(hub.list(0).map(e => e.seq), [8, 9, 10, 11, 12], 'keeps the newest 5')
  t.same(hub.bounds(), { oldest: 8, head: 12 })
  const sub = hub.subscribe({ since: 2 })
  const items = sub.takeReady(100)
  t.same(items[0], { kind: 'gap', from: 3, to: 7 })
  t.same(seqs(items.slice(1)), [8, 9, 10, 11, 12])
  // Seq numbers are never reused after pruning, even by a new hub (a restarted server).
  const again = new EventHub(store, { history: 5 })
  t.equal(again.publish(stats('v', 99)).seq, 13)
})

t.test('a subscriber that does not keep up is closed with a reason, never silently skipped', async t => {
  const hub = new EventHub(fresh(t), { queueLimit: 10 })
  const slow = hub.subscribe()
  const fast = hub.subscribe()
  let reason: unknown
  slow.onClose(r => { reason = r })
  const got: SupercloudEvent[] = []
  for (let i = 0; i < 5; i++) hub.publish(stats('v', i))
  for (const it of slow.takeReady(2)) if (it.kind === 'event') got.push(it.event)
  for (let i = 0; i < 30; i++) {
    hub.publish(stats('v', i))
    for (const it of fast.takeReady(100)) t.equal(it.kind, 'event')
  }
  t.ok(slow.closeReason, 'slow subscriber closed')
  const r = reason as { kind: string, error: SlowConsumerError }
  t.equal(r.kind, 'slow')
  t.ok(r.error instanceof SlowConsumerError)
  t.equal(r.error.code, 'SC_EVENTS_SLOW_CONSUMER')
  t.equal(r.error.lastSeq, 2, 'tells where the subscriber stopped')
  t.match(r.error.message, /resume after seq 2/)
  t.same(slow.takeReady(10), [], 'a closed subscription yields nothing more')
  t.equal(await slow.next(), undefined)
  t.notOk(fast.closeReason, 'a subscriber that keeps up stays')
  t.equal(hub.stats().slowDisconnects, 1)
  // Resuming from where it stopped gets everything after, in order.
  const resumed = hub.subscribe({ since: r.error.lastSeq })
  t.same(seqs(resumed.takeReady(1000)), Array.from({ length: 33 }, (_, i) => i + 3))
})

t.test('a long replay does not count as falling behind', async t => {
  const hub = new EventHub(fresh(t), { queueLimit: 5, pageSize: 3 })
  hub.publishMany(Array.from({ length: 50 }, (_, i) => stats('v', i)))
  const sub = hub.subscribe({ since: 0 })
  hub.publish(stats('v', 50))
  const n = [...sub.takeReady(1000)].length
  t.equal(n, 51)
  t.notOk(sub.closeReason)
})

t.test('ingest validates outside events; an agent\'s events carry its own host', async t => {
  const hub = new EventHub(fresh(t))
  const ev = hub.ingest({ type: 'overload.started', host: 'someone-else', vm: 'web1', data: { pagingRate: 10, threshold: 5 } }, 'agent on host-a', { host: 'host-a' })
  t.equal(ev.host, 'host-a')
  t.throws(() => hub.ingest({ type: 'vm.stats', vm: 'web1', data: {} }, 'agent on host-a'), EventRejectedError)
  t.equal(hub.stats().rejected, 1)
  t.equal(hub.list(0).length, 1, 'the malformed one was not stored')

  // The agent push path: AgentClient.onEvent → ingestAgentEvents.
  const listeners: Array<(ev: unknown) => void> = []
  const client = { host: 'host-b', onEvent: (fn: (ev: unknown) => void) => { listeners.push(fn); return () => {} } }
  const rejected: EventRejectedError[] = []
  ingestAgentEvents(hub, client, e => rejected.push(e))
  listeners[0]?.({ type: 'overload.ended', ts: '2025-05-05T05:05:05Z', vm: 'web1', data: { durationMs: 1500 } })
  listeners[0]?.({ type: 'overload.ended', vm: 'web1', data: {} })
  const last = hub.list(0).pop()
  t.equal(last?.type, 'overload.ended')
  t.equal(last?.host, 'host-b')
  t.equal(last?.ts, '2025-05-05T05:05:05Z', 'the agent\'s timestamp is kept')
  t.equal(rejected.length, 1)
  t.match(rejected[0]?.message, /agent on host-b.*data.durationMs: required/)
})

t.test('closing the hub ends subscriptions', async t => {
  const hub = new EventHub(fresh(t))
  const sub = hub.subscribe()
  const p = sub.next()
  hub.close()
  t.equal(await p, undefined)
  t.same(sub.closeReason, { kind: 'hub-closed' })
  t.throws(() => hub.publish(stats('v', 1)), { code: 'SC_EVENTS_CLOSED' })
})
