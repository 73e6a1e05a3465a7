/**
 * A real PostgreSQL server for a test file: Debian's postgresql binaries (the newest major version
 * under /usr/lib/postgresql), `initdb` + `pg_ctl`
 * run as the `postgres` user (the server refuses root), listening only on a unix socket in a
 * temporary directory owned by that user (no TCP listener), password login (scram). Stopped and
 * removed by `stop()` (register it with t.teardown), and on process exit if a test dies first.
 * The directory carries a prefix registered with the sweep (sweep-lib.ts), so a server left by a
 * killed run is found and killed by `SC_TEST_RUN=... node --import tsx test/helpers/sweep.ts`.
 */
import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registerPrefix } from './sweep-lib.ts'

/** The newest installed major version's binaries (Debian 12: 15). */
const BIN = join('/usr/lib/postgresql', String(Math.max(0, ...readdirSync('/usr/lib/postgresql').map(Number).filter(Number.isInteger))), 'bin')
export const PG_PASSWORD = 'sc-test-secret'

export interface TestPostgres {
  /** The socket directory (also the server's home). */
  dir: string
  /** postgres://postgres:PASSWORD@localhost/DB?host=DIR */
  url: (db?: string, password?: string) => string
  /** Runs SQL as the superuser through psql (setup and inspection only). */
  psql: (sql: string, db?: string) => string
  stop: () => void
}

function uidGid (user: string): { uid: number, gid: number } {
  const id = (flag: string): number => Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim())
  return { uid: id('-u'), gid: id('-g') }
}

function asPostgres (dir: string, cmd: string, args: string[]): string {
  return execFileSync('runuser', ['-u', 'postgres', '--', join(BIN, cmd), ...args], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Starts a server (a few hundred ms); `stop()` stops it (immediate shutdown) and removes its files. */
export function startPostgres (): TestPostgres {
  const prefix = `scpg${(process.env.SC_TEST_RUN ?? 'adhoc').replace(/[^a-z0-9]/g, '')}`
  registerPrefix(prefix)
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`))
  const { uid, gid } = uidGid('postgres')
  chownSync(dir, uid, gid)
  const data = join(dir, 'data')
  const pwfile = join(dir, 'pw')
  writeFileSync(pwfile, PG_PASSWORD + '\n', { mode: 0o600 })
  chownSync(pwfile, uid, gid)
  let stopped = false
  const stop = (): void => {
    if (stopped) return
    stopped = true
    try { asPostgres(dir, 'pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w']) } catch { /* not running */ }
    rmSync(dir, { recursive: true, force: true })
  }
  process.once('exit', stop)
  try {
    asPostgres(dir, 'initdb', ['-D', data, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwfile}`, '--no-sync', '-E', 'UTF8', '--locale=C.UTF-8'])
    const opts = `-c listen_addresses='' -c unix_socket_directories='${dir}' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40 -c shared_buffers=16MB`
    asPostgres(dir, 'pg_ctl', ['start', '-D', data, '-w', '-t', '30', '-l', join(dir, 'log'), '-o', opts])
  } catch (err) {
    stop()
    throw err
  }
  const url = (db = 'postgres', password = PG_PASSWORD): string => `postgres://postgres:${encodeURIComponent(password)}@localhost/${db}?host=${encodeURIComponent(dir)}`
  const psql = (sql: string, db = 'postgres'): string =>
    execFileSync(join(BIN, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-U', 'postgres', '-d', db, '-c', sql], { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PG_PASSWORD } }).trim()
  return { dir, url, psql, stop }
}
