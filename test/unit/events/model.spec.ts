import t from 'tap'
import { LiveModel } from '../../../blanket-manager/events/model.ts'
import { describeEvent, formatBytes, formatEventLine } from '../../../blanket-manager/events/format.ts'
import { renderMetrics } from '../../../blanket-manager/server/metrics.ts'
import { EVENT_SCHEMA_VERSION, type EventInput, type SupercloudEvent } from '../../../blanket-manager/events/schema.ts'
import type { StatusReport } from '../../../blanket-manager/controller/index.ts'

let seq = 0
const at = (i: EventInput, ts = `2025-01-01T00:00:${String(seq).padStart(2, '0')}Z`): SupercloudEvent =>
  ({ schema: EVENT_SCHEMA_VERSION, seq: ++seq, ...i, ts }) as SupercloudEvent

t.test('overload lifecycle, thresholds and paging samples', async t => {
  const m = new LiveModel()
  m.apply(at({ type: 'overload.threshold', data: { threshold: 400 } }))
  m.apply(at({ type: 'vm.stats', host: 'h1', vm: 'web1', data: { residentBytes: 100, balloonBytes: 200, pagingRate: 50 } }))
  t.equal(m.thresholdFor('web1'), 400, 'global threshold')
  m.apply(at({ type: 'overload.threshold', host: 'h1', data: { threshold: 600 } }))
  t.equal(m.thresholdFor('web1'), 600, 'host threshold wins over global')
  m.apply(at({ type: 'overload.started', host: 'h1', vm: 'web1', data: { pagingRate: 900, threshold: 700 } }))
  m.apply(at({ type: 'overload.classified', vm: 'web1', data: { classification: 'sustained' } }))
  m.apply(at({ type: 'overload.swap', vm: 'web1', data: { enabled: true } }))
  m.apply(at({ type: 'overload.migration-decided', vm: 'web1', data: { target: 'h2', reason: 'sustained' } }))
  const v = m.vms.get('web1')
  t.same(v?.samples.map(s => s.rate), [50, 900])
  t.same({ ...v?.overload, since: undefined }, { since: undefined, pagingRate: 900, threshold: 700, classification: 'sustained', swap: true, migrationTarget: 'h2' })
  t.equal(m.thresholdFor('web1'), 700)
  m.apply(at({ type: 'overload.ended', vm: 'web1', data: { durationMs: 3000 } }))
  t.equal(m.vms.get('web1')?.overload, undefined)
  t.equal(m.vms.get('web1')?.overloads.length, 1)
  t.ok(m.vms.get('web1')?.overloads[0]?.to, 'overload window closed')
  const before = m.counts['overload.started']
  m.apply({ ...at({ type: 'overload.started', vm: 'web1', data: { pagingRate: 1, threshold: 1 } }), seq: 1 } as SupercloudEvent)
  t.equal(m.counts['overload.started'], before, 'replayed (old) events are ignored')
})

t.test('migrations and connectors', async t => {
  const m = new LiveModel()
  m.apply(at({ type: 'migration.started', vm: 'db1', data: { migration: 'm1', from: 'h1', to: 'h2' } }))
  m.apply(at({ type: 'migration.progress', vm: 'db1', data: { migration: 'm1', transferredBytes: 50, totalBytes: 200 } }))
  t.same([m.migrations.get('m1')?.state, m.migrations.get('m1')?.transferredBytes], ['running', 50])
  m.apply(at({ type: 'migration.switchover', vm: 'db1', data: { migration: 'm1' } }))
  m.apply(at({ type: 'migration.completed', vm: 'db1', data: { migration: 'm1', durationMs: 4000 } }))
  t.equal(m.migrations.get('m1')?.state, 'completed')
  t.equal(m.vms.get('db1')?.host, 'h2', 'the VM now lives on the target')
  m.apply(at({ type: 'connector.created', data: { connector: 7, wire: 'a.eth0 -- b.eth0', hosts: ['h1', 'h3'] } }))
  m.apply(at({ type: 'connector.repointed', data: { connector: 7, from: 'h1', to: 'h2' } }))
  t.same(m.connectors.get(7)?.hosts, ['h2', 'h3'])
  m.apply(at({ type: 'connector.destroyed', data: { connector: 7 } }))
  t.equal(m.connectors.get(7)?.state, 'destroyed')
})

t.test('event lines', async t => {
  t.equal(formatBytes(128 * 1024 * 1024), '128 MiB')
  t.equal(formatBytes(undefined), '—')
  t.equal(describeEvent(at({ type: 'overload.started', vm: 'w', data: { pagingRate: 1200.4, threshold: 800 } })), 'overload started: paging 1200 pages/s > threshold 800')
  t.equal(describeEvent(at({ type: 'migration.progress', vm: 'w', data: { migration: 'm', transferredBytes: 1, totalBytes: 4 } })), 'migration m: 25% (1 B of 4 B)')
  t.match(formatEventLine(at({ type: 'vm.running', host: 'h', vm: 'w', data: {} })), /^\s+\d+  \S+Z  vm\.running\s+h\/w\s+VM running$/)
})

t.test('metrics text', async t => {
  const m = new LiveModel()
  m.apply(at({ type: 'vm.stats', host: 'h1', vm: 'web1', data: { residentBytes: 1000, balloonBytes: 2000, pagingRate: 12 } }))
  m.apply(at({ type: 'overload.started', host: 'h1', vm: 'web1', data: { pagingRate: 900, threshold: 700 } }))
  const status: StatusReport = {
    name: 'x',
    stateFile: '',
    hosts: [{ name: 'h1', site: 's"1', driver: 'local', status: 'ready', health: 'running' }, { name: 'h2', site: 's2', driver: 'local', status: 'ready', health: 'unreachable' }],
    vms: [{ name: 'web1', host: 'h1', status: 'ready', state: 'running', addresses: [], memory: { requestedBytes: 4096, allocatedBytes: 2048 } }]
  }
  const text = renderMetrics({ status, model: m, hub: { head: 2, oldest: 1, subscribers: 0, published: { 'vm.stats': 1 }, rejected: 0, slowDisconnects: 0 }, connections: { events: 0, console: 0 } })
  t.match(text, /^supercloud_host_up\{host="h1",site="s\\"1"\} 1$/m, 'label values escaped')
  t.match(text, /^supercloud_host_up\{host="h2",site="s2"\} 0$/m)
  t.match(text, /^supercloud_vm_memory_requested_bytes\{vm="web1",host="h1"\} 4096$/m)
  t.match(text, /^supercloud_vm_memory_allocated_bytes\{vm="web1",host="h1"\} 2048$/m)
  t.match(text, /^supercloud_vm_memory_resident_bytes\{vm="web1",host="h1"\} 1000$/m)
  t.match(text, /^supercloud_vm_paging_rate\{vm="web1",host="h1"\} 12$/m)
  t.match(text, /^supercloud_vm_overload_threshold\{vm="web1",host="h1"\} 700$/m)
  t.match(text, /^supercloud_vm_overloaded\{vm="web1",host="h1"\} 1$/m)
  t.notMatch(text, /swapped_local_bytes\{/, 'unknown figures are left out, not reported as 0')
  t.match(text, /^# TYPE supercloud_events_seen_total counter$/m)
  t.ok(text.endsWith('\n'))
})
