/** Schema migrations chosen by version, and state URLs checked before any connection. */
import t from 'tap'
import { pendingMigrations, SCHEMA_VERSION, type Migration } from '../../../blanket-manager/state/migrations.ts'
import { parsePgUrl } from '../../../blanket-manager/state/pg/url.ts'
import { stateUrl } from '../../../blanket-manager/state/store.ts'
import { StateSchemaError, StateUrlError } from '../../../blanket-manager/state/errors.ts'

const list: Migration[] = [1, 2, 3].map(version => ({ version, sqlite: '', postgres: '' }))

t.test('a store gets the migrations it lacks, in order; a newer one is refused', async t => {
  t.strictSame(pendingMigrations(0, 'x', list).map(m => m.version), [1, 2, 3])
  t.strictSame(pendingMigrations(2, 'x', list).map(m => m.version), [3])
  t.strictSame(pendingMigrations(3, 'x', list), [])
  t.throws(() => pendingMigrations(4, 'the db', list), new StateSchemaError('the db', 4, 3))
  t.ok(SCHEMA_VERSION >= 1)
})

t.test('state URLs: checked, shown without their password', async t => {
  const u = parsePgUrl('postgres://alice:s3cret@db.example:5433/sc')
  t.equal(u.display, 'postgres://alice:***@db.example:5433/sc')
  t.equal(u.connectionString, 'postgres://alice:s3cret@db.example:5433/sc')
  t.equal(parsePgUrl('postgresql://bob@/sc?host=/run/pg').display, 'postgresql://bob@/sc?host=/run/pg')
  for (const [bad, why] of [['postgres:/x', 'names no host'], ['http://a/b', 'scheme is http'], ['postgres://a:pw@h', 'names no database'], ['postgres://a:pw@h:99999/d', 'cannot be parsed'], ['nonsense', 'cannot be parsed']]) {
    t.throws(() => parsePgUrl(bad ?? ''), StateUrlError)
    try { parsePgUrl(bad ?? '') } catch (err) { t.match((err as Error).message, why ?? ''); t.notMatch((err as Error).message, /:pw@/, 'no password shown') }
  }
})

t.test('where the state is: the spec first, then SUPERCLOUD_STATE, else the SQLite file', async t => {
  t.equal(stateUrl('postgres://a@h/d', { SUPERCLOUD_STATE: 'postgres://b@h/d' }), 'postgres://a@h/d')
  t.equal(stateUrl(undefined, { SUPERCLOUD_STATE: 'postgres://b@h/d' }), 'postgres://b@h/d')
  t.equal(stateUrl(undefined, {}), undefined)
  t.equal(stateUrl('', { SUPERCLOUD_STATE: '' }), undefined)
})
