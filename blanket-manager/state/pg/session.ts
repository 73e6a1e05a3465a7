/**
 * One process's connection to one supercloud's state in PostgreSQL: the bridge to node-postgres
 * (bridge.ts), the schema migrations applied on connect, transactions, the locks this process
 * holds and their fencing numbers. Stores of one supercloud opened in one process share their
 * session (as they share SQLite's per-process locks): its lock session is the process's.
 *
 * Fencing: taking a lock increments its number in `lock_fences` (pg/locks.ts). While this
 * process holds locks, every write runs in a transaction that first writes the time into each
 * held lock's fence row *where the number is still ours*; when another process took the lock
 * since (this one's lock session died: kill -9 of the server backend, a cut network) no row
 * matches and the write is refused (StateFencedError). The row lock taken by that write orders it
 * against the new holder's increment, so a fenced write never lands after the lock moved.
 */
import { SupercloudError } from '../../../core/errors.ts'
import { StateAuthError, StateFencedError, StateUnreachableError } from '../errors.ts'
import { pendingMigrations } from '../migrations.ts'
import { PgCallError, SyncPg, type Conn, type QueryResult } from './bridge.ts'
import type { PgTarget } from './url.ts'

type Row = Record<string, unknown>

const AUTH = new Set(['28P01', '28000'])
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', '3D000', '57P01', '57P03', 'EPIPE'])

/** A failure of node-postgres as the typed error a user reads. */
export function stateError (err: unknown, where: string): Error {
  if (err instanceof SupercloudError || !(err instanceof PgCallError)) return err as Error
  if (err.code !== undefined && AUTH.has(err.code)) return new StateAuthError(where, err.message)
  if ((err.code !== undefined && UNREACHABLE.has(err.code)) || /timeout|terminated/i.test(err.message)) return new StateUnreachableError(where, err.message)
  return err
}

export interface HeldLock { count: number, fence: number, key: number }

export class PgSession {
  readonly held = new Map<string, HeldLock>()
  private depth = 0
  private users = 0
  private readonly pg: SyncPg

  constructor (readonly target: PgTarget, readonly schema: string, readonly name: string, private readonly onClosed: () => void) {
    this.pg = new SyncPg({ connectionString: target.connectionString, schema: quoteIdent(schema) })
  }

  get where (): string { return `${this.target.display} (schema ${this.schema})` }

  /** Connects and brings the schema to the newest version (serialized across processes by an advisory lock). */
  connect (): void {
    this.run('data', 'SELECT pg_advisory_lock(hashtext($1))', [`supercloud-migrate:${this.schema}`])
    try {
      this.run('data', `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}; CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`)
      for (const m of pendingMigrations(this.schemaVersion(), this.where)) {
        this.transaction(() => {
          this.run('data', m.postgres)
          this.run('data', 'DELETE FROM schema_version')
          this.run('data', 'INSERT INTO schema_version (version) VALUES ($1)', [m.version])
        })
      }
    } finally {
      this.run('data', 'SELECT pg_advisory_unlock(hashtext($1))', [`supercloud-migrate:${this.schema}`])
    }
  }

  /** The channel on which appended events are announced (payload: the last seq). */
  get eventChannel (): string { return quoteIdent(`${this.schema}:events`) }

  private readonly watchers = new Set<() => void>()
  private listening = false

  /** Calls `fn` whenever any process appended events to this supercloud (LISTEN/NOTIFY); returns the remover. */
  watchEvents (fn: () => void): () => void {
    if (!this.listening) {
      try {
        this.pg.listen(this.eventChannel, () => { for (const w of [...this.watchers]) w() })
      } catch (err) {
        throw stateError(err, this.where)
      }
      this.listening = true
    }
    this.watchers.add(fn)
    return () => { this.watchers.delete(fn) }
  }

  schemaVersion (): number {
    return Number(this.run('data', 'SELECT max(version) AS v FROM schema_version').rows[0]?.v ?? 0)
  }

  use (): this { this.users++; return this }

  /** Drops one user; the last closes the connections (the server then releases the session's locks). */
  release (): void {
    if (--this.users > 0) return
    this.pg.close()
    this.onClosed()
  }

  run (conn: Conn, sql: string, params: unknown[] = []): QueryResult {
    try {
      return this.pg.query(conn, sql, params)
    } catch (err) {
      throw stateError(err, this.where)
    }
  }

  rows (sql: string, params: unknown[] = []): Row[] { return this.run('data', sql, params).rows }

  /** A change: fenced while this process holds locks; returns the rows it returned and its row count. */
  write (sql: string, params: unknown[] = []): QueryResult {
    if (this.held.size === 0 || this.depth > 0) return this.run('data', sql, params)
    return this.transaction(() => this.run('data', sql, params))
  }

  transaction<T> (fn: () => T): T {
    const sp = `sp${this.depth}`
    this.run('data', this.depth === 0 ? 'BEGIN' : `SAVEPOINT ${sp}`)
    this.depth++
    try {
      if (this.depth === 1) this.checkFences()
      const r = fn()
      this.depth--
      this.run('data', this.depth === 0 ? 'COMMIT' : `RELEASE SAVEPOINT ${sp}`)
      return r
    } catch (err) {
      this.depth--
      try { this.run('data', this.depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT ${sp}`) } catch { /* connection gone: rolled back */ }
      throw err
    }
  }

  private checkFences (): void {
    const now = new Date().toISOString()
    for (const [name, h] of this.held) {
      if (this.run('data', 'UPDATE lock_fences SET written = $3 WHERE name = $1 AND n = $2', [name, h.fence, now]).rowCount !== 1) throw new StateFencedError(this.where, name)
    }
  }
}

/** A quoted SQL identifier. */
export function quoteIdent (s: string): string {
  return '"' + s.replace(/"/g, '""') + '"'
}
