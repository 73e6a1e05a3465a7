/**
 * The embedded store (the default): one SQLite file per supercloud (better-sqlite3, WAL, every
 * change in a transaction), `<dir>/state.db`, locked by kernel locks (lock.ts, vm-lock.ts).
 * Each action is recorded *before* it runs (status 'creating' / 'destroying') and again when it
 * finished, so an interrupted `up` or `down` (Ctrl-C, kill -9) is finished by the next run
 * without duplicates or leaks.
 */
import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { PinnedHostKey } from '../../core/ssh.ts'
import { eventFromRow, hostColumns, hostFromRow, networkFromRow, operationFromRow, operatorFromRow, StoreBase, vmColumns, vmFromRow } from './common.ts'
import { pendingMigrations } from './migrations.ts'
import type { EventRow, HostRow, JournalEntry, NetworkRow, OperationRow, OperationStatus, OperatorRow, StateLocation, StateLocks, StateStore, VmRow } from './types.ts'
import { fileLocks } from './vm-lock.ts'

type Row = Record<string, unknown>

export class SqliteStateStore extends StoreBase implements StateStore {
  readonly dir: string
  readonly path: string
  readonly locks: StateLocks
  private readonly db: Database.Database

  private constructor (dir: string) {
    super()
    this.dir = dir
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.path = join(dir, 'state.db')
    this.locks = fileLocks(dir, this.path)
    this.db = new Database(this.path)
    try {
      this.db.pragma('journal_mode = WAL')
      this.db.pragma('synchronous = FULL')
      this.db.pragma('busy_timeout = 5000')
      this.migrate()
    } catch (err) {
      this.db.close()
      throw err
    }
  }

  static open (dir: string): SqliteStateStore {
    return new SqliteStateStore(dir)
  }

  private migrate (): void {
    const current = Number(this.db.pragma('user_version', { simple: true }))
    for (const m of pendingMigrations(current, this.path)) {
      this.db.transaction(() => {
        this.db.exec(m.sqlite)
        this.db.pragma(`user_version = ${m.version}`)
      })()
    }
  }

  location (): StateLocation {
    return { kind: 'sqlite', where: this.path, schemaVersion: Number(this.db.pragma('user_version', { simple: true })) }
  }

  close (): void {
    this.unlock()
    this.db.close()
  }

  destroy (): void {
    this.close()
  }

  getMeta (key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined
    return row?.value
  }

  setMeta (key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value)
  }

  allMeta (): Array<{ key: string, value: string }> {
    return this.db.prepare('SELECT key, value FROM meta ORDER BY key').all() as Array<{ key: string, value: string }>
  }

  insertOperation (row: Omit<OperationRow, 'ended' | 'cancelBy' | 'status'>): void {
    this.db.prepare('INSERT INTO operations (id, kind, subject, who, pid, started, status) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(row.id, row.kind, row.subject ?? null, row.who, row.pid, row.started, 'running')
  }

  finishOperation (id: string, status: Exclude<OperationStatus, 'running'>, ended: string): void {
    this.db.prepare("UPDATE operations SET status = ?, ended = ? WHERE id = ? AND status = 'running'").run(status, ended, id)
  }

  requestCancel (id: string, by: string): boolean {
    return this.db.prepare("UPDATE operations SET cancel_by = ? WHERE id = ? AND status = 'running'").run(by, id).changes === 1
  }

  operation (id: string): OperationRow | undefined {
    const r = this.db.prepare('SELECT * FROM operations WHERE id = ?').get(id) as Row | undefined
    return r === undefined ? undefined : operationFromRow(r)
  }

  operations (opts: { running?: boolean, limit?: number } = {}): OperationRow[] {
    const where = opts.running === true ? "WHERE status = 'running'" : ''
    return (this.db.prepare(`SELECT * FROM operations ${where} ORDER BY started DESC LIMIT ?`).all(opts.limit ?? 50) as Row[]).map(operationFromRow)
  }

  networks (): NetworkRow[] {
    return (this.db.prepare('SELECT * FROM networks ORDER BY driver').all() as Row[]).map(networkFromRow)
  }

  putNetwork (row: NetworkRow): void {
    this.db.prepare(`INSERT INTO networks (driver, spec_hash, status, updated) VALUES (?, ?, ?, ?)
      ON CONFLICT(driver) DO UPDATE SET spec_hash = excluded.spec_hash, status = excluded.status, updated = excluded.updated`)
      .run(row.driver, row.specHash, row.status, new Date().toISOString())
  }

  deleteNetwork (driver: string): void {
    this.db.prepare('DELETE FROM networks WHERE driver = ?').run(driver)
  }

  hosts (): HostRow[] {
    return (this.db.prepare('SELECT * FROM hosts ORDER BY name').all() as Row[]).map(hostFromRow)
  }

  host (name: string): HostRow | undefined {
    const r = this.db.prepare('SELECT * FROM hosts WHERE name = ?').get(name) as Row | undefined
    return r === undefined ? undefined : hostFromRow(r)
  }

  putHost (row: HostRow): void {
    this.db.prepare(`INSERT INTO hosts (name, site, driver, spec_hash, status, record, accel, accel_reason, bootstrapped, updated)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET site = excluded.site, driver = excluded.driver, spec_hash = excluded.spec_hash,
        status = excluded.status, record = excluded.record, accel = excluded.accel, accel_reason = excluded.accel_reason,
        bootstrapped = excluded.bootstrapped, updated = excluded.updated`)
      .run(...hostColumns(row, new Date().toISOString()))
  }

  deleteHost (name: string): void {
    this.db.prepare('DELETE FROM hosts WHERE name = ?').run(name)
  }

  hostKey (host: string): PinnedHostKey | undefined {
    const r = this.db.prepare('SELECT fingerprint, public_key, pinned FROM host_keys WHERE host = ?').get(host) as { fingerprint: string, public_key: string, pinned: string } | undefined
    return r === undefined ? undefined : { fingerprint: r.fingerprint, publicKey: r.public_key, since: r.pinned }
  }

  pinHostKey (host: string, fingerprint: string, publicKey: string, since = new Date().toISOString()): void {
    this.db.prepare(`INSERT INTO host_keys (host, fingerprint, public_key, pinned) VALUES (?, ?, ?, ?)
      ON CONFLICT(host) DO UPDATE SET fingerprint = excluded.fingerprint, public_key = excluded.public_key, pinned = excluded.pinned`)
      .run(host, fingerprint, publicKey, since)
  }

  hostKeys (): Array<PinnedHostKey & { host: string }> {
    return (this.db.prepare('SELECT * FROM host_keys ORDER BY host').all() as Array<Record<string, string>>)
      .map(r => ({ host: String(r.host), fingerprint: String(r.fingerprint), publicKey: String(r.public_key), since: String(r.pinned) }))
  }

  forgetHostKey (host: string): boolean {
    return this.db.prepare('DELETE FROM host_keys WHERE host = ?').run(host).changes === 1
  }

  operators (): OperatorRow[] {
    return (this.db.prepare('SELECT * FROM operators ORDER BY name').all() as Row[]).map(operatorFromRow)
  }

  putOperator (row: OperatorRow): void {
    this.db.prepare(`INSERT INTO operators (name, public_key, added, added_by) VALUES (?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET public_key = excluded.public_key, added = excluded.added, added_by = excluded.added_by`)
      .run(row.name, row.publicKey, row.added, row.by)
  }

  deleteOperator (name: string): boolean {
    return this.db.prepare('DELETE FROM operators WHERE name = ?').run(name).changes === 1
  }

  vms (): VmRow[] {
    return (this.db.prepare('SELECT * FROM vms ORDER BY name').all() as Row[]).map(vmFromRow)
  }

  vm (name: string): VmRow | undefined {
    const r = this.db.prepare('SELECT * FROM vms WHERE name = ?').get(name) as Row | undefined
    return r === undefined ? undefined : vmFromRow(r)
  }

  putVm (row: VmRow): void {
    this.db.prepare(`INSERT INTO vms (name, host, spec_hash, status, record, error, updated) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET host = excluded.host, spec_hash = excluded.spec_hash, status = excluded.status,
        record = excluded.record, error = excluded.error, updated = excluded.updated`)
      .run(...vmColumns(row, new Date().toISOString()))
  }

  deleteVm (name: string): void {
    this.db.prepare('DELETE FROM vms WHERE name = ?').run(name)
  }

  journal (kind: string, subject: string, detail: Record<string, unknown> = {}, keep = 10000): number {
    return this.db.transaction(() => {
      const info = this.db.prepare('INSERT INTO journal (ts, kind, subject, detail) VALUES (?, ?, ?, ?)')
        .run(new Date().toISOString(), kind, subject, JSON.stringify(detail))
      const seq = Number(info.lastInsertRowid)
      if (seq % 100 === 0) this.db.prepare('DELETE FROM journal WHERE seq <= ?').run(seq - keep)
      return seq
    })()
  }

  journalSince (seq: number, limit = 1000): JournalEntry[] {
    return (this.db.prepare('SELECT * FROM journal WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as Array<Record<string, string | number>>)
      .map(r => ({ seq: Number(r.seq), ts: String(r.ts), kind: String(r.kind), subject: String(r.subject), detail: JSON.parse(String(r.detail)) as Record<string, unknown> }))
  }

  appendEvents (rows: Array<Omit<EventRow, 'seq'>>, keep = 20000): number[] {
    const insert = this.db.prepare('INSERT INTO events (ts, type, host, vm, data) VALUES (?, ?, ?, ?, ?)')
    return this.db.transaction(() => {
      const seqs = rows.map(r => Number(insert.run(r.ts, r.type, r.host ?? null, r.vm ?? null, r.data).lastInsertRowid))
      const last = seqs[seqs.length - 1]
      if (last !== undefined) this.db.prepare('DELETE FROM events WHERE seq <= ?').run(last - keep)
      return seqs
    })()
  }

  eventsSince (seq: number, opts: { limit?: number, vm?: string, host?: string } = {}): EventRow[] {
    const where = ['seq > @seq']
    if (opts.vm !== undefined) where.push('vm = @vm')
    if (opts.host !== undefined) where.push('host = @host')
    return (this.db.prepare(`SELECT * FROM events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT @limit`)
      .all({ seq, vm: opts.vm ?? null, host: opts.host ?? null, limit: opts.limit ?? 1000 }) as Row[]).map(eventFromRow)
  }

  eventBounds (): { oldest: number, head: number } {
    const o = this.db.prepare('SELECT MIN(seq) AS oldest FROM events').get() as { oldest: number | null }
    const h = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get() as { seq: number } | undefined
    return { oldest: o.oldest ?? 0, head: h?.seq ?? 0 }
  }

  transaction<T> (fn: () => T): T {
    return this.db.transaction(fn)()
  }
}
