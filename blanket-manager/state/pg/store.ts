/**
 * The shared store: one supercloud's state in PostgreSQL (`state: postgres://...` in the spec, or
 * SUPERCLOUD_STATE), in a schema of its own (`supercloud_<name>`) with the tables of the SQLite
 * store (migrations.ts), so a team's operators see and change one supercloud. Synchronous like
 * the SQLite store (bridge.ts); locks are advisory locks (locks.ts), writes fenced (session.ts).
 * The supercloud's local directory still holds this operator's SSH key and driver files.
 */
import type { PinnedHostKey } from '../../../core/ssh.ts'
import { eventFromRow, hostColumns, hostFromRow, networkFromRow, operationFromRow, operatorFromRow, StoreBase, vmColumns, vmFromRow } from '../common.ts'
import type { EventRow, HostRow, JournalEntry, NetworkRow, OperationRow, OperationStatus, OperatorRow, StateLocation, StateLocks, StateStore, VmRow } from '../types.ts'
import { advisoryLocks } from './locks.ts'
import { PgSession, quoteIdent } from './session.ts'
import { parsePgUrl } from './url.ts'

/** Sessions of this process, by URL and schema (stores of one supercloud share one). */
const sessions = new Map<string, PgSession>()

/** The schema holding supercloud `name`'s state. */
export function schemaOf (name: string): string {
  return `supercloud_${name}`
}

export class PgStateStore extends StoreBase implements StateStore {
  readonly path: string
  readonly locks: StateLocks
  private closed = false

  private constructor (readonly dir: string, private readonly s: PgSession) {
    super()
    this.path = s.where
    this.locks = advisoryLocks(s)
  }

  /** Opens supercloud `name`'s state at `url` (connecting and migrating on first open in this process). */
  static open (name: string, dir: string, url: string): PgStateStore {
    const target = parsePgUrl(url)
    const schema = schemaOf(name)
    const id = `${target.connectionString}\n${schema}`
    let s = sessions.get(id)
    if (s === undefined) {
      const fresh = new PgSession(target, schema, name, () => { sessions.delete(id) })
      try {
        fresh.connect()
      } catch (err) {
        fresh.use().release()
        throw err
      }
      sessions.set(id, fresh)
      s = fresh
    }
    return new PgStateStore(dir, s.use())
  }

  /** Whether the database at `url` holds a supercloud named `name` (for `state push`); connects without creating anything. */
  static exists (name: string, url: string): boolean {
    const target = parsePgUrl(url)
    const probe = new PgSession(target, schemaOf(name), name, () => {})
    try {
      return probe.use().rows('SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2', [schemaOf(name), 'schema_version']).length > 0
    } finally {
      probe.release()
    }
  }

  /** `url` as messages show it (without its password). */
  static displayUrl (url: string): string {
    return parsePgUrl(url).display
  }

  location (): StateLocation {
    return { kind: 'postgres', where: this.s.where, schemaVersion: this.s.schemaVersion() }
  }

  close (): void {
    if (this.closed) return
    this.unlock()
    this.closed = true
    this.s.release()
  }

  destroy (): void {
    if (this.closed) return
    this.unlock()
    this.s.run('data', `DROP SCHEMA IF EXISTS ${quoteIdent(this.s.schema)} CASCADE`)
    this.close()
  }

  getMeta (key: string): string | undefined {
    const r = this.s.rows('SELECT value FROM meta WHERE key = $1', [key])[0]
    return r === undefined ? undefined : String(r.value)
  }

  setMeta (key: string, value: string): void {
    this.s.write('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value])
  }

  allMeta (): Array<{ key: string, value: string }> {
    return this.s.rows('SELECT key, value FROM meta ORDER BY key').map(r => ({ key: String(r.key), value: String(r.value) }))
  }

  insertOperation (row: Omit<OperationRow, 'ended' | 'cancelBy' | 'status'>): void {
    this.s.write("INSERT INTO operations (id, kind, subject, who, pid, started, status) VALUES ($1, $2, $3, $4, $5, $6, 'running')",
      [row.id, row.kind, row.subject ?? null, row.who, row.pid, row.started])
  }

  finishOperation (id: string, status: Exclude<OperationStatus, 'running'>, ended: string): void {
    this.s.write("UPDATE operations SET status = $1, ended = $2 WHERE id = $3 AND status = 'running'", [status, ended, id])
  }

  requestCancel (id: string, by: string): boolean {
    return this.s.write("UPDATE operations SET cancel_by = $1 WHERE id = $2 AND status = 'running'", [by, id]).rowCount === 1
  }

  operation (id: string): OperationRow | undefined {
    const r = this.s.rows('SELECT * FROM operations WHERE id = $1', [id])[0]
    return r === undefined ? undefined : operationFromRow(r)
  }

  operations (opts: { running?: boolean, limit?: number } = {}): OperationRow[] {
    const where = opts.running === true ? "WHERE status = 'running'" : ''
    return this.s.rows(`SELECT * FROM operations ${where} ORDER BY started DESC LIMIT $1`, [opts.limit ?? 50]).map(operationFromRow)
  }

  networks (): NetworkRow[] {
    return this.s.rows('SELECT * FROM networks ORDER BY driver').map(networkFromRow)
  }

  putNetwork (row: NetworkRow): void {
    this.s.write(`INSERT INTO networks (driver, spec_hash, status, updated) VALUES ($1, $2, $3, $4)
      ON CONFLICT (driver) DO UPDATE SET spec_hash = excluded.spec_hash, status = excluded.status, updated = excluded.updated`,
    [row.driver, row.specHash, row.status, new Date().toISOString()])
  }

  deleteNetwork (driver: string): void {
    this.s.write('DELETE FROM networks WHERE driver = $1', [driver])
  }

  hosts (): HostRow[] {
    return this.s.rows('SELECT * FROM hosts ORDER BY name').map(hostFromRow)
  }

  host (name: string): HostRow | undefined {
    const r = this.s.rows('SELECT * FROM hosts WHERE name = $1', [name])[0]
    return r === undefined ? undefined : hostFromRow(r)
  }

  putHost (row: HostRow): void {
    this.s.write(`INSERT INTO hosts (name, site, driver, spec_hash, status, record, accel, accel_reason, bootstrapped, updated)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
      ON CONFLICT (name) DO UPDATE SET site = excluded.site, driver = excluded.driver, spec_hash = excluded.spec_hash,
        status = excluded.status, record = excluded.record, accel = excluded.accel, accel_reason = excluded.accel_reason,
        bootstrapped = excluded.bootstrapped, updated = excluded.updated`, hostColumns(row, new Date().toISOString()))
  }

  deleteHost (name: string): void {
    this.s.write('DELETE FROM hosts WHERE name = $1', [name])
  }

  hostKey (host: string): PinnedHostKey | undefined {
    const r = this.s.rows('SELECT fingerprint, public_key, pinned FROM host_keys WHERE host = $1', [host])[0]
    return r === undefined ? undefined : { fingerprint: String(r.fingerprint), publicKey: String(r.public_key), since: String(r.pinned) }
  }

  pinHostKey (host: string, fingerprint: string, publicKey: string, since = new Date().toISOString()): void {
    this.s.write(`INSERT INTO host_keys (host, fingerprint, public_key, pinned) VALUES ($1, $2, $3, $4)
      ON CONFLICT (host) DO UPDATE SET fingerprint = excluded.fingerprint, public_key = excluded.public_key, pinned = excluded.pinned`,
    [host, fingerprint, publicKey, since])
  }

  hostKeys (): Array<PinnedHostKey & { host: string }> {
    return this.s.rows('SELECT * FROM host_keys ORDER BY host')
      .map(r => ({ host: String(r.host), fingerprint: String(r.fingerprint), publicKey: String(r.public_key), since: String(r.pinned) }))
  }

  forgetHostKey (host: string): boolean {
    return this.s.write('DELETE FROM host_keys WHERE host = $1', [host]).rowCount === 1
  }

  operators (): OperatorRow[] {
    return this.s.rows('SELECT * FROM operators ORDER BY name').map(operatorFromRow)
  }

  putOperator (row: OperatorRow): void {
    this.s.write(`INSERT INTO operators (name, public_key, added, added_by) VALUES ($1, $2, $3, $4)
      ON CONFLICT (name) DO UPDATE SET public_key = excluded.public_key, added = excluded.added, added_by = excluded.added_by`,
    [row.name, row.publicKey, row.added, row.by])
  }

  deleteOperator (name: string): boolean {
    return this.s.write('DELETE FROM operators WHERE name = $1', [name]).rowCount === 1
  }

  vms (): VmRow[] {
    return this.s.rows('SELECT * FROM vms ORDER BY name').map(vmFromRow)
  }

  vm (name: string): VmRow | undefined {
    const r = this.s.rows('SELECT * FROM vms WHERE name = $1', [name])[0]
    return r === undefined ? undefined : vmFromRow(r)
  }

  putVm (row: VmRow): void {
    this.s.write(`INSERT INTO vms (name, host, spec_hash, status, record, error, updated) VALUES ($1, $2, $3, $4, $5, $6, $7)
      ON CONFLICT (name) DO UPDATE SET host = excluded.host, spec_hash = excluded.spec_hash, status = excluded.status,
        record = excluded.record, error = excluded.error, updated = excluded.updated`, vmColumns(row, new Date().toISOString()))
  }

  deleteVm (name: string): void {
    this.s.write('DELETE FROM vms WHERE name = $1', [name])
  }

  journal (kind: string, subject: string, detail: Record<string, unknown> = {}, keep = 10000): number {
    return this.s.transaction(() => {
      const seq = Number(this.s.run('data', 'INSERT INTO journal (ts, kind, subject, detail) VALUES ($1, $2, $3, $4) RETURNING seq',
        [new Date().toISOString(), kind, subject, JSON.stringify(detail)]).rows[0]?.seq)
      if (seq % 100 === 0) this.s.run('data', 'DELETE FROM journal WHERE seq <= $1', [seq - keep])
      return seq
    })
  }

  journalSince (seq: number, limit = 1000): JournalEntry[] {
    return this.s.rows('SELECT * FROM journal WHERE seq > $1 ORDER BY seq LIMIT $2', [seq, limit])
      .map(r => ({ seq: Number(r.seq), ts: String(r.ts), kind: String(r.kind), subject: String(r.subject), detail: JSON.parse(String(r.detail)) as Record<string, unknown> }))
  }

  appendEvents (rows: Array<Omit<EventRow, 'seq'>>, keep = 20000): number[] {
    if (rows.length === 0) return []
    return this.s.transaction(() => {
      const seqs = rows.map(r => Number(this.s.run('data', 'INSERT INTO events (ts, type, host, vm, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq',
        [r.ts, r.type, r.host ?? null, r.vm ?? null, r.data]).rows[0]?.seq))
      const last = seqs[seqs.length - 1]
      if (last !== undefined) {
        this.s.run('data', 'DELETE FROM events WHERE seq <= $1', [last - keep])
        // Delivered at commit to every process following this supercloud (watchEvents).
        this.s.run('data', 'SELECT pg_notify($1, $2)', [`${this.s.schema}:events`, String(last)])
      }
      return seqs
    })
  }

  eventsSince (seq: number, opts: { limit?: number, vm?: string, host?: string } = {}): EventRow[] {
    const where = ['seq > $1']
    const params: unknown[] = [seq, opts.limit ?? 1000]
    if (opts.vm !== undefined) { params.push(opts.vm); where.push(`vm = $${params.length}`) }
    if (opts.host !== undefined) { params.push(opts.host); where.push(`host = $${params.length}`) }
    return this.s.rows(`SELECT * FROM events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT $2`, params).map(eventFromRow)
  }

  eventBounds (): { oldest: number, head: number } {
    const o = this.s.rows('SELECT MIN(seq) AS oldest FROM events')[0]
    const h = this.s.rows('SELECT last_value, is_called FROM events_seq_seq')[0]
    return { oldest: Number(o?.oldest ?? 0), head: h?.is_called === true ? Number(h.last_value) : 0 }
  }

  transaction<T> (fn: () => T): T {
    return this.s.transaction(fn)
  }

  watchEvents (fn: () => void): () => void {
    return this.s.watchEvents(fn)
  }
}
