/** The controller's typed meta keys over a real state store. */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { controllerState, StateValueError } from '../../../blanket-manager/controller/state.ts'

function open (t: { teardown: (fn: () => void) => void }): StateStore {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const store = StateStore.open(dir)
  t.teardown(() => { store.close(); rmSync(dir, { recursive: true, force: true }) })
  return store
}

t.test('values round-trip, absent keys read as their defaults', async t => {
  const store = open(t)
  const s = controllerState(store)
  t.equal(s.context(), undefined)
  t.same(s.overrides(), {})
  t.same(s.wireChanges(), { added: [], removed: [] })
  t.same(s.connectorIds(), {})
  t.equal(s.wiresApplied(), '')
  t.equal(s.diskReuse('web'), undefined)
  t.equal(s.migration('web'), undefined)
  s.setContext({ sites: { s1: { name: 's1', subnet: '198.18.0.0/24' } }, wan: { delayMs: 5 } })
  s.setOverrides({ web: { host: 'h2', specHost: 'h1' }, db: { host: 'h1' } })
  s.setWireChanges({ added: [{ a: { component: 'web', port: 'eth1' }, b: { component: 'db', port: 'eth1' } }], removed: ['x'] })
  s.setConnectorIds({ 'web:eth1-db:eth1': 3 })
  s.setWiresApplied('abc')
  s.setDiskReuse('web', { host: 'h1', id: 'abcdef012345' })
  s.setMigration('web', { from: 'h1', to: 'h2', mode: 'precopy', id: 'abcdef012345', reuse: 'abcdef000000', startedAt: 't' })
  const again = controllerState(store)
  t.same(again.context(), { sites: { s1: { name: 's1', subnet: '198.18.0.0/24' } }, wan: { delayMs: 5 } })
  t.same(again.overrides(), { web: { host: 'h2', specHost: 'h1' }, db: { host: 'h1' } })
  t.same(again.wireChanges().added[0], { a: { component: 'web', port: 'eth1' }, b: { component: 'db', port: 'eth1' } })
  t.same(again.connectorIds(), { 'web:eth1-db:eth1': 3 })
  t.equal(again.wiresApplied(), 'abc')
  t.same(again.diskReuse('web'), { host: 'h1', id: 'abcdef012345' })
  t.same(again.migration('web'), { from: 'h1', to: 'h2', mode: 'precopy', id: 'abcdef012345', reuse: 'abcdef000000', startedAt: 't' })
  again.setDiskReuse('web', undefined)
  again.setMigration('web', undefined)
  t.equal(again.diskReuse('web'), undefined, 'cleared')
  t.equal(again.migration('web'), undefined, 'cleared')
})

t.test('a value of the wrong shape is a StateValueError naming its key', async t => {
  const store = open(t)
  const s = controllerState(store)
  const cases: Array<[string, string, () => unknown]> = [
    ['placement-overrides', '{"web":{"host":3}}', () => s.overrides()],
    ['placement-overrides', 'not json', () => s.overrides()],
    ['wire-changes', '{"added":[{"a":{}}],"removed":[]}', () => s.wireChanges()],
    ['connector-ids', '{"w":"one"}', () => s.connectorIds()],
    ['context', '{"sites":[]}', () => s.context()]
  ]
  for (const [key, value, read] of cases) {
    store.setMeta(key, value)
    let err: unknown
    try { read() } catch (e) { err = e }
    t.ok(err instanceof StateValueError && err.code === 'SC_STATE_VALUE' && err.key === key, `${key} = ${value}`)
  }
})

t.test('a disk-reuse or migration record that does not check reads as absent (as before)', async t => {
  const store = open(t)
  const s = controllerState(store)
  store.setMeta('disk-reuse:web', '{"host":"h1","id":"not an id"}')
  t.equal(s.diskReuse('web'), undefined)
  store.setMeta('disk-reuse:web', '{broken')
  t.equal(s.diskReuse('web'), undefined)
  store.setMeta('migration:web', '{"from":"h1"}')
  t.equal(s.migration('web'), undefined)
})
