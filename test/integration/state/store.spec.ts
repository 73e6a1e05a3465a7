/**
 * The state stores against a real PostgreSQL (test/helpers/postgres.ts: one server for this
 * file) and SQLite files: the compliance suite on both, then what only PostgreSQL has (login and
 * reachability errors, schema versions in the database, fencing of a holder that lost its lock).
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { PG_PASSWORD, startPostgres } from '../../helpers/postgres.ts'
import { contender, open, stateCompliance, type Supercloud } from './state.compliance.ts'
import { SCHEMA_VERSION } from '../../../blanket-manager/state/migrations.ts'
import { SupercloudError } from '../../../core/errors.ts'
import { waitForLock } from '../../../blanket-manager/state/wait.ts'
import { EventHub } from '../../../blanket-manager/events/hub.ts'

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

t.test('waiting for a lock: says who holds it, waits until it is free; --no-wait refuses; Ctrl-C stops the wait', async t => {
  const sc = fresh(pg.url())
  const s = open(sc)
  const holder = await contender(sc, 'lock')
  t.throws(() => { s.lock('up') }, { code: 'SC_STATE_LOCKED' }, 'without waiting: refused at once')
  const ac = new AbortController()
  const cancelled = waitForLock(() => { s.lock('up') }, { wait: true, signal: ac.signal, pollMs: 50 })
  ac.abort()
  await t.rejects(cancelled, { code: 'SC_CANCELLED' }, 'Ctrl-C ends the wait')
  const said: string[] = []
  let got = false
  const waiting = waitForLock(() => { s.lock('up'); got = true }, { wait: true, pollMs: 50, onBlocked: err => { said.push(err.message) } })
  await new Promise(resolve => setTimeout(resolve, 300))
  t.notOk(got, 'still waiting while the other process holds it')
  t.equal(said.length, 1, 'said once who holds it')
  t.match(said[0], new RegExp(`locked by running process ${holder.line.split(' ')[1] ?? 'x'} \\(\\S+@\\S+ since \\d\\d:\\d\\d:\\d\\d, up\\)`))
  holder.child.stdin.write('release\n')
  await waiting
  t.ok(got, 'took the lock once it was released')
  await holder.done
  s.close()
})

/** Runs the real CLI (bin/supercloud) in `dir` with `env`. */
async function cli (dir: string, env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number, out: string, err: string }> {
  const child = spawn(join(import.meta.dirname, '..', '..', '..', 'bin', 'supercloud'), args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number>(resolve => child.on('exit', c => { resolve(c ?? 137) }))
  return { code, out, err }
}

t.test('cli: state show, push to PostgreSQL (refused twice), pull by another operator; down --no-wait refused, down waits then drops the state', async t => {
  const work = mkdtempSync(join(tmpdir(), 'sc-state-cli-'))
  t.teardown(() => { rmSync(work, { recursive: true, force: true }) })
  writeFileSync(join(work, 'supercloud.yaml'), 'name: pgcli\n')
  const alice = { SUPERCLOUD_STATE_DIR: join(work, 'alice'), SUPERCLOUD_STATE: '' }
  const seed = open({ name: 'pgcli', dir: join(alice.SUPERCLOUD_STATE_DIR, 'pgcli') })
  seed.putHost({ name: 'h1', site: 'a', driver: 'local', specHash: 'x', status: 'ready', bootstrapped: true })
  seed.putVm({ name: 'v1', host: 'h1', specHash: 'y', status: 'ready' })
  seed.pinHostKey('h1', 'SHA256:abc', 'ssh-ed25519 AAAA')
  const prefix = seed.prefix()
  seed.close()
  const local = await cli(work, alice, ['state', 'show'])
  t.match(local.out, new RegExp(`^pgcli: SQLite file ${alice.SUPERCLOUD_STATE_DIR}/pgcli/state.db \\(schema version ${SCHEMA_VERSION}\\)`))
  const push = await cli(work, alice, ['state', 'push', pg.url()])
  t.equal(push.code, 0, push.err)
  t.match(push.err, /state push: 1 host\(s\), 1 VM\(s\), 0 network\(s\), 1 host key\(s\) copied/)
  t.notMatch(push.err, PG_PASSWORD, 'the password is not printed')
  const again = await cli(work, alice, ['state', 'push', pg.url()])
  t.equal(again.code, 1)
  t.match(again.err, /^error\[SC_STATE_EXISTS\]: .* already holds a supercloud named pgcli; nothing was copied/)

  const bob = { SUPERCLOUD_STATE_DIR: join(work, 'bob'), SUPERCLOUD_STATE: pg.url() }
  const shown = await cli(work, bob, ['state', 'show'])
  t.match(shown.out, /^pgcli: PostgreSQL postgres:\/\/postgres:\*\*\*@localhost\/postgres\?host=\S+ \(schema supercloud_pgcli\) \(schema version \d+\)/)
  const shared = open({ name: 'pgcli', dir: join(work, 'bob', 'pgcli'), url: pg.url() })
  t.equal(shared.prefix(), prefix, 'the other operator sees the same world')
  t.strictSame(shared.vms().map(v => v.name), ['v1'])
  t.equal(shared.hostKey('h1')?.fingerprint, 'SHA256:abc')
  shared.close()
  const carol = { SUPERCLOUD_STATE_DIR: join(work, 'carol'), SUPERCLOUD_STATE: pg.url() }
  const pull = await cli(work, carol, ['state', 'pull'])
  t.equal(pull.code, 0, pull.err)
  const pulled = open({ name: 'pgcli', dir: join(work, 'carol', 'pgcli') })
  t.strictSame(pulled.snapshot(), (() => { const a = open({ name: 'pgcli', dir: join(alice.SUPERCLOUD_STATE_DIR, 'pgcli') }); const snap = a.snapshot(); a.close(); return snap })(), 'pulled what was pushed')
  pulled.close()

  // An empty supercloud in PostgreSQL, locked by another process: down --no-wait is refused, down waits.
  writeFileSync(join(work, 'supercloud.yaml'), 'name: pgdown\n')
  const sc: Supercloud = { name: 'pgdown', dir: join(work, 'dave', 'pgdown'), url: pg.url() }
  open(sc).close()
  const holder = await contender(sc, 'lock')
  const refused = await cli(work, bob, ['down', '--no-wait'])
  t.equal(refused.code, 1)
  t.match(refused.err, new RegExp(`error\\[SC_STATE_LOCKED\\]: state .* is locked by running process ${holder.line.split(' ')[1] ?? 'x'} \\(\\S+@\\S+ since \\d\\d:\\d\\d:\\d\\d, up\\)`))
  const child = spawn(join(import.meta.dirname, '..', '..', '..', 'bin', 'supercloud'), ['down'], { cwd: work, env: { ...process.env, ...bob }, stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  const said = new Promise<void>(resolve => { child.stderr.on('data', (d: Buffer) => { err += d.toString(); if (err.includes('waiting…')) resolve() }) })
  const exited = new Promise<number>(resolve => child.on('exit', c => { resolve(c ?? 137) }))
  await said
  t.match(err, /is locked by running process \d+ \(\S+ since \S+, up\); waiting… \(Ctrl-C to stop\)/, 'a blocked down says who holds the lock and waits')
  holder.child.stdin.write('release\n')
  t.equal(await exited, 0, err)
  t.equal(pg.psql("SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'supercloud_pgdown'"), '0', 'down removed the state from PostgreSQL')
  await holder.done
})

t.test('postgres events: a follower is told of another process\'s events at once (LISTEN/NOTIFY), not by polling', async t => {
  const sc = fresh(pg.url())
  const s = open(sc)
  const hub = new EventHub(s)
  const seen: string[] = []
  const arrived = new Promise<void>(resolve => { hub.tap(ev => { seen.push(`${ev.type} ${ev.host ?? ''}`); resolve() }) })
  hub.follow(3_600_000)
  const t0 = Date.now()
  const other = await contender(sc, 'event', 'h9')
  t.match(other.line, /^got \d+$/)
  await arrived
  t.ok(Date.now() - t0 < 30_000, 'delivered long before the hour-long backstop poll')
  t.strictSame(seen, ['host.gone h9'])
  hub.close()
  s.close()
})
