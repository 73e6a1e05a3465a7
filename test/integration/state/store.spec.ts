/**
 * The state stores against a real PostgreSQL (test/helpers/postgres.ts: one server for this
 * file) and SQLite files: the compliance suite on both, then what only PostgreSQL has (login and
 * reachability errors, schema versions in the database, fencing of a holder that lost its lock).
 */
import t from 'tap'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.ts'
import { contender, open, stateCompliance, type Supercloud } from './state.compliance.ts'
import { SCHEMA_VERSION } from '../../../blanket-manager/state/migrations.ts'
import { SupercloudError } from '../../../core/errors.ts'

const pg = startPostgres()
t.teardown(pg.stop)
let n = 0
const fresh = (url?: string): Supercloud => {
  const sc: Supercloud = { name: `sc${++n}`, dir: mkdtempSync(join(tmpdir(), 'sc-state-')) }
  if (url !== undefined) sc.url = url
  return sc
}

stateCompliance(t, { kind: 'sqlite', fresh: () => fresh() })
stateCompliance(t, { kind: 'postgres', fresh: () => fresh(pg.url()) })

/** The code of the error `fn` throws. */
function codeOf (fn: () => unknown): string {
  try { fn() } catch (err) { return err instanceof SupercloudError ? `${err.code}: ${err.message}` : `untyped: ${String(err)}` }
  return 'no error'
}

t.test('postgres: a bad URL, a wrong password, an unreachable server or database are typed errors naming what was wrong', async t => {
  const sc = fresh()
  const err = (url: string): string => codeOf(() => open({ ...sc, url }))
  t.match(err('postgres://'), /^SC_STATE_URL: .*names no host/)
  t.match(err('mysql://u@h/db'), /^SC_STATE_URL: .*scheme is mysql/)
  t.match(err(`postgres://postgres:x@localhost/?host=${pg.dir}`), /^SC_STATE_URL: .*names no database/)
  const wrong = err(pg.url('postgres', 'wrong-secret'))
  t.match(wrong, /^SC_STATE_AUTH: PostgreSQL at postgres:\/\/postgres:\*\*\*@localhost\/postgres.* refused the login: password authentication failed/)
  t.notMatch(wrong, /wrong-secret/, 'the password is never shown')
  t.match(err(pg.url('nodb')), /^SC_STATE_UNREACHABLE: .*database "nodb" does not exist/)
  t.match(err('postgres://u:p@localhost/db?host=/nonexistent-dir'), /^SC_STATE_UNREACHABLE: cannot reach .*ENOENT/)
  t.match(err('postgres://u:p@127.0.0.1:1/db'), /^SC_STATE_UNREACHABLE: .*ECONNREFUSED/)
})

t.test('schema versions: applied at open, recorded; a newer store is refused and left unchanged', async t => {
  const sc = fresh(pg.url())
  const s = open(sc)
  t.strictSame(s.location(), { kind: 'postgres', where: `${pg.url().replace(PG_PASSWORD, '***')} (schema supercloud_${sc.name})`, schemaVersion: SCHEMA_VERSION })
  s.setMeta('k', 'v')
  s.close()
  t.equal(pg.psql(`SELECT version FROM supercloud_${sc.name}.schema_version`), String(SCHEMA_VERSION))
  pg.psql(`UPDATE supercloud_${sc.name}.schema_version SET version = ${SCHEMA_VERSION + 1}`)
  t.match(codeOf(() => open(sc)), new RegExp(`^SC_STATE_SCHEMA: the state at .* has schema version ${SCHEMA_VERSION + 1}, newer than this supercloud's ${SCHEMA_VERSION}`))
  t.equal(pg.psql(`SELECT version FROM supercloud_${sc.name}.schema_version`), String(SCHEMA_VERSION + 1), 'version left as it was')

  const lite = fresh()
  open(lite).close()
  const db = new Database(join(lite.dir, 'state.db'))
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION, 'SQLite records its version too')
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
  db.close()
  t.match(codeOf(() => open(lite)), /^SC_STATE_SCHEMA: /)
})

t.test('postgres fencing: a holder whose lock session died cannot write once another took the lock', async t => {
  const sc = fresh(pg.url())
  const a = open(sc)
  a.lock('up')
  a.setMeta('owner', 'a')
  const killed = pg.psql(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'supercloud lock' AND pid IN (SELECT backend FROM supercloud_${sc.name}.lock_holders)`)
  t.equal(killed, '1', "the holder's lock session is cut")
  const b = await contender(sc, 'lock')
  t.match(b.line, /^got \d+$/, 'another process takes the freed lock')
  t.match(codeOf(() => { a.setMeta('owner', 'stale a') }), /^SC_STATE_FENCED: this process lost the supercloud lock/)
  t.equal(a.getMeta('owner'), 'a', 'the stale write did not land')
  b.child.stdin.write('release\n')
  await b.done
  a.close()
})
