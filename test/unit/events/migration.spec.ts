import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { EventHub } from '../../../blanket-manager/events/hub.ts'
import { reportMigration } from '../../../blanket-manager/events/migration.ts'
import { LiveModel } from '../../../blanket-manager/events/model.ts'

t.test('a migration\'s events: started, throttled progress, one ending', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-events-'))
  const store = StateStore.open(dir)
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  const hub = new EventHub(store)
  let clock = 1000
  const r = reportMigration(hub, { vm: 'db1', from: 'h1', to: 'h2', now: () => clock })
  t.equal(r.id, 'db1-1000')
  r.progress({ phase: 'disks', sentBytes: 10, remainingBytes: 90 })
  clock += 200
  r.progress({ phase: 'disks', sentBytes: 20, remainingBytes: 80 }) // throttled
  r.progress({ phase: 'memory', sentBytes: 30, remainingBytes: 70 }) // phase change: published
  clock += 1000
  r.progress({ phase: 'memory', sentBytes: 60, remainingBytes: 40 })
  r.switchover(12)
  r.completed({ totalMs: 4000, downtimeMs: 12 })
  r.failed(new Error('late')) // after the end: ignored
  const evs = hub.list(0)
  t.same(evs.map(e => e.type), ['migration.started', 'migration.progress', 'migration.progress', 'migration.progress', 'migration.switchover', 'migration.completed'])
  const model = new LiveModel()
  evs.forEach(e => model.apply(e))
  t.same(model.migrations.get('db1-1000'), {
    id: 'db1-1000', vm: 'db1', from: 'h1', to: 'h2', state: 'completed', transferredBytes: 100, totalBytes: 100, phase: 'memory', started: evs[0]?.ts, ended: evs[5]?.ts
  })
})
