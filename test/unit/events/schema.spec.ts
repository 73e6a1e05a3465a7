import t from 'tap'
import { EVENT_SCHEMA_VERSION, EVENT_TYPE_NAMES, isSupercloudEvent, typeMatches, validateEventInput } from '../../../blanket-manager/events/schema.ts'

t.test('every type the issue names exists', async t => {
  for (const name of ['host.created', 'host.ready', 'host.gone', 'agent.up', 'agent.down', 'vm.created', 'vm.running', 'vm.stopped', 'vm.failed', 'vm.deleted', 'vm.stats',
    'connector.created', 'connector.repointed', 'connector.destroyed', 'migration.started', 'migration.progress', 'migration.switchover', 'migration.completed',
    'migration.failed', 'migration.cancelled', 'overload.started', 'overload.classified', 'overload.swap', 'overload.threshold', 'overload.migration-decided',
    'overload.ended', 'host.interruption', 'host.rebalance']) {
    t.ok(EVENT_TYPE_NAMES.includes(name as never), name)
  }
})

t.test('a well-formed event passes and keeps only known fields', async t => {
  const r = validateEventInput({ type: 'overload.started', host: 'host-a', vm: 'web1', ts: '2025-01-02T03:04:05.678Z', data: { pagingRate: 1200, threshold: 800 } })
  t.ok(r.ok)
  if (r.ok) t.same(r.event, { type: 'overload.started', host: 'host-a', vm: 'web1', ts: '2025-01-02T03:04:05.678Z', data: { pagingRate: 1200, threshold: 800 } })
  t.ok(validateEventInput({ type: 'overload.classified', vm: 'web1', data: { classification: 'sustained' } }).ok)
  t.ok(validateEventInput({ type: 'overload.threshold', data: { threshold: 500 } }).ok, 'threshold for everything needs no host or vm')
  t.ok(validateEventInput({ type: 'connector.created', data: { connector: 4097, wire: 'fw1.eth1 -- db1.eth0', hosts: ['host-b', 'host-c'] } }).ok)
})

t.test('malformed events are rejected with the reason', async t => {
  const cases: Array<[unknown, RegExp]> = [
    ['nope', /must be an object/],
    [{ type: 'vm.exploded', vm: 'x' }, /unknown event type "vm.exploded"/],
    [{ type: 'vm.running', host: 'h', data: {} }, /vm: required for vm.running/],
    [{ type: 'vm.stats', host: 'h', vm: 'v', data: { residentBytes: 'lots', balloonBytes: 1 } }, /data.residentBytes: must be a finite number/],
    [{ type: 'vm.stats', host: 'h', vm: 'v', data: { residentBytes: 1 } }, /data.balloonBytes: required/],
    [{ type: 'overload.classified', vm: 'v', data: { classification: 'meh' } }, /one of transient, sustained/],
    [{ type: 'overload.swap', vm: 'v', data: { enabled: 'yes' } }, /true or false/],
    [{ type: 'host.gone', host: 'h', data: { reason: 'x', extra: 1 } }, /data.extra: unknown field/],
    [{ type: 'host.gone', host: 'h', data: { reason: 'x' }, color: 'red' }, /color: unknown field/],
    [{ type: 'host.gone', host: '../etc', data: { reason: 'x' } }, /host: must be a name/],
    [{ type: 'host.gone', host: 'h', ts: 'yesterday', data: { reason: 'x' } }, /ts: must be an ISO 8601/],
    [{ type: 'host.gone', host: 'h', schema: 2, data: { reason: 'x' } }, /schema: version 2 is not supported/],
    [{ type: 'vm.stats', host: 'h', vm: 'v', data: { residentBytes: Infinity, balloonBytes: 1 } }, /finite/],
    [{ type: 'connector.created', data: { connector: 1, wire: 'a -- b', hosts: [1] } }, /list of strings/]
  ]
  for (const [raw, re] of cases) {
    const r = validateEventInput(raw)
    t.notOk(r.ok, JSON.stringify(raw))
    if (!r.ok) t.match(r.issues.join('\n'), re)
  }
})

t.test('stored events are recognised', async t => {
  t.ok(isSupercloudEvent({ schema: EVENT_SCHEMA_VERSION, seq: 3, ts: '2025-01-01T00:00:00Z', type: 'agent.up', host: 'h', data: {} }))
  t.notOk(isSupercloudEvent({ schema: EVENT_SCHEMA_VERSION, seq: 0, ts: '2025-01-01T00:00:00Z', type: 'agent.up', host: 'h', data: {} }), 'seq starts at 1')
  t.notOk(isSupercloudEvent({ seq: 3, ts: '2025-01-01T00:00:00Z', type: 'agent.up', host: 'h', data: {} }), 'schema version is required')
})

t.test('type patterns', async t => {
  t.ok(typeMatches('migration.*', 'migration.progress'))
  t.notOk(typeMatches('migration.*', 'vm.running'))
  t.ok(typeMatches('vm.stats', 'vm.stats'))
  t.notOk(typeMatches('!vm.stats', 'vm.stats'))
  t.ok(typeMatches('!vm.stats', 'vm.running'))
})

t.test('docs/events.md documents every event type', async t => {
  const { readFileSync } = await import('node:fs')
  const doc = readFileSync(new URL('../../../docs/events.md', import.meta.url), 'utf8')
  for (const name of EVENT_TYPE_NAMES) t.match(doc, `| \`${name}\` |`, name)
})
