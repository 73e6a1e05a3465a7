/**
 * The controller's record of what exists where: one SQLite file per supercloud
 * (better-sqlite3, WAL, every change in a transaction). Each action is recorded
 * *before* it runs (status 'creating' / 'destroying') and again when it finished,
 * so an interrupted `up` or `down` (Ctrl-C, kill -9) is finished by the next run
 * without duplicates or leaks.
 */
import type { GuestPlugged } from '../../drivers/hypervisor.ts'
import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { HostRecord } from '../../drivers/cloud.ts'
import { takeStateLock } from './lock.ts'
import { movesInProgress } from './vm-lock.ts'
import { VmMovingError } from '../../core/errors.ts'
import type { HostKeyPins, PinnedHostKey } from '../../core/ssh.ts'

export type ResourceStatus = 'creating' | 'ready' | 'destroying' | 'failed' | 'migrating'

export interface HostRow {
  name: string
  site: string
  driver: string
  specHash: string
  status: ResourceStatus
  /** Present once the driver created the host. */
  record?: HostRecord
  /** Hypervisor acceleration the bootstrap chose ('kvm' | 'tcg'), once bootstrapped. */
  accel?: string
  /** Reason given by the accel probe. */
  accelReason?: string
  bootstrapped: boolean
}

/** What the controller launched for one VM (the agent's view of it is authoritative for run state). */
export interface VmRecord {
  host: string
  nics: Array<{ name: string, address: string, mac: string, tap: string }>
  memory: { requestedBytes: number, allocatedBytes: number }
  cpus: number
  image: string
  /** Its data disks as last launched (absent in states written before disks were recorded: then the spec's are assumed). */
  disks?: Array<{ name: string, sizeBytes: number }>
  /** What was hot-plugged into it while it ran (a live update); absent: as cold-booted. */
  plugged?: GuestPlugged
}

export interface VmRow {
  name: string
  host: string
  specHash: string
  status: ResourceStatus
  record?: VmRecord
  error?: string
}

export interface NetworkRow {
  driver: string
  specHash: string
  status: ResourceStatus
}

export interface JournalEntry {
  seq: number
  ts: string
  kind: string
  subject: string
  detail: Record<string, unknown>
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (driver TEXT PRIMARY KEY, spec_hash TEXT NOT NULL, status TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
  name TEXT PRIMARY KEY, site TEXT NOT NULL, driver TEXT NOT NULL, spec_hash TEXT NOT NULL,
  status TEXT NOT NULL, record TEXT, accel TEXT, accel_reason TEXT, bootstrapped INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vms (
  name TEXT PRIMARY KEY, host TEXT NOT NULL, spec_hash TEXT NOT NULL, status TEXT NOT NULL,
  record TEXT, error TEXT, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT, who TEXT NOT NULL, pid INTEGER NOT NULL, started TEXT NOT NULL, ended TEXT, status TEXT NOT NULL, cancel_by TEXT);
CREATE TABLE IF NOT EXISTS host_keys (host TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, public_key TEXT NOT NULL, pinned TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
`

/** One stored event; `data` is the event's JSON (its shape is events/schema.ts's business). */
export interface EventRow {
  seq: number
  ts: string
  type: string
  host?: string
  vm?: string
  data: string
}

export interface StateSnapshot {
  networks: NetworkRow[]
  hosts: HostRow[]
  vms: VmRow[]
}

export class StateStore {
  readonly dir: string
  readonly path: string
  private readonly db: Database.Database
  private release?: () => void
  private eventsReady = false

  private constructor (dir: string) {
    this.dir = dir
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    this.path = join(dir, 'state.db')
    this.db = new Database(this.path)
    this.db.pragma('journal_mode = WAL')
    this.db.pragma('synchronous = FULL')
    this.db.pragma('busy_timeout = 5000')
    this.db.exec(SCHEMA)
  }

  static open (dir: string): StateStore {
    return new StateStore(dir)
  }

  /**
   * Takes the supercloud's exclusive lock (one mutating command at a time): a kernel lock
   * (lock.ts), free again the moment a holder dies. Throws StateLockedError while another
   * process holds it, VmMovingError (and lets it go again) while another process moves a VM
   * (vm-lock.ts: no move starts while it is held).
   */
  lock (): void {
    if (this.release !== undefined) return
    const release = takeStateLock(this.dir, this.path)
    const moving = movesInProgress(this.dir)[0]
    if (moving !== undefined) {
      release()
      throw new VmMovingError(moving.vm, moving.pid)
    }
    this.release = release
  }

  unlock (): void {
    this.release?.()
    this.release = undefined
  }

  close (): void {
    this.unlock()
    this.db.close()
  }

  getMeta (key: string): string | undefined {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined
    return row?.value
  }

  setMeta (key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value)
  }

  /** Records an operation that starts now (operations/operation.ts). */
  insertOperation (row: Omit<OperationRow, 'ended' | 'cancelBy' | 'status'>): void {
    this.db.prepare('INSERT INTO operations (id, kind, subject, who, pid, started, status) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(row.id, row.kind, row.subject ?? null, row.who, row.pid, row.started, 'running')
  }

  finishOperation (id: string, status: Exclude<OperationStatus, 'running'>, ended: string): void {
    this.db.prepare("UPDATE operations SET status = ?, ended = ? WHERE id = ? AND status = 'running'").run(status, ended, id)
  }

  /** Asks a running operation to stop (it polls for this); false when no such operation runs. */
  requestCancel (id: string, by: string): boolean {
    return this.db.prepare("UPDATE operations SET cancel_by = ? WHERE id = ? AND status = 'running'").run(by, id).changes === 1
  }

  operation (id: string): OperationRow | undefined {
    const r = this.db.prepare('SELECT * FROM operations WHERE id = ?').get(id) as Record<string, unknown> | undefined
    return r === undefined ? undefined : toOperationRow(r)
  }

  /** Operations newest first; `running` only those not ended. */
  operations (opts: { running?: boolean, limit?: number } = {}): OperationRow[] {
    const where = opts.running === true ? "WHERE status = 'running'" : ''
    return (this.db.prepare(`SELECT * FROM operations ${where} ORDER BY started DESC LIMIT ?`).all(opts.limit ?? 50) as Array<Record<string, unknown>>).map(toOperationRow)
  }

  /** The per-supercloud prefix for kernel object names, chosen once and kept. */
  prefix (isTaken: (p: string) => boolean = () => false): string {
    const existing = this.getMeta('prefix')
    if (existing !== undefined) return existing
    for (;;) {
      const p = 'sc' + randomBytes(2).toString('hex')
      if (!isTaken(p)) { this.setMeta('prefix', p); return p }
    }
  }

  snapshot (): StateSnapshot {
    return { networks: this.networks(), hosts: this.hosts(), vms: this.vms() }
  }

  networks (): NetworkRow[] {
    return (this.db.prepare('SELECT * FROM networks ORDER BY driver').all() as Array<Record<string, string>>)
      .map(r => ({ driver: r.driver ?? '', specHash: r.spec_hash ?? '', status: r.status as ResourceStatus }))
  }

  putNetwork (row: NetworkRow): void {
    this.db.prepare(`INSERT INTO networks (driver, spec_hash, status, updated) VALUES (@driver, @specHash, @status, @now)
      ON CONFLICT(driver) DO UPDATE SET spec_hash = excluded.spec_hash, status = excluded.status, updated = excluded.updated`)
      .run({ ...row, now: new Date().toISOString() })
  }

  deleteNetwork (driver: string): void {
    this.db.prepare('DELETE FROM networks WHERE driver = ?').run(driver)
  }

  hosts (): HostRow[] {
    return (this.db.prepare('SELECT * FROM hosts ORDER BY name').all() as Array<Record<string, unknown>>).map(hostFromRow)
  }

  host (name: string): HostRow | undefined {
    const r = this.db.prepare('SELECT * FROM hosts WHERE name = ?').get(name) as Record<string, unknown> | undefined
    return r === undefined ? undefined : hostFromRow(r)
  }

  putHost (row: HostRow): void {
    this.db.prepare(`INSERT INTO hosts (name, site, driver, spec_hash, status, record, accel, accel_reason, bootstrapped, updated)
      VALUES (@name, @site, @driver, @specHash, @status, @record, @accel, @accelReason, @bootstrapped, @now)
      ON CONFLICT(name) DO UPDATE SET site = excluded.site, driver = excluded.driver, spec_hash = excluded.spec_hash,
        status = excluded.status, record = excluded.record, accel = excluded.accel, accel_reason = excluded.accel_reason,
        bootstrapped = excluded.bootstrapped, updated = excluded.updated`)
      .run({
        name: row.name,
        site: row.site,
        driver: row.driver,
        specHash: row.specHash,
        status: row.status,
        record: row.record === undefined ? null : JSON.stringify(row.record),
        accel: row.accel ?? null,
        accelReason: row.accelReason ?? null,
        bootstrapped: row.bootstrapped ? 1 : 0,
        now: new Date().toISOString()
      })
  }

  deleteHost (name: string): void {
    this.db.prepare('DELETE FROM hosts WHERE name = ?').run(name)
  }

  /**
   * The SSH host key pinned for a host: its fingerprint (SHA256:..., as OpenSSH prints it), the
   * public key (`type base64`, for a known_hosts file) and when it was pinned.
   */
  hostKey (host: string): PinnedHostKey | undefined {
    const r = this.db.prepare('SELECT fingerprint, public_key, pinned FROM host_keys WHERE host = ?').get(host) as { fingerprint: string, public_key: string, pinned: string } | undefined
    return r === undefined ? undefined : { fingerprint: r.fingerprint, publicKey: r.public_key, since: r.pinned }
  }

  /** Pins a host's key (replacing an earlier pin). */
  pinHostKey (host: string, fingerprint: string, publicKey: string): void {
    this.db.prepare(`INSERT INTO host_keys (host, fingerprint, public_key, pinned) VALUES (?, ?, ?, ?)
      ON CONFLICT(host) DO UPDATE SET fingerprint = excluded.fingerprint, public_key = excluded.public_key, pinned = excluded.pinned`)
      .run(host, fingerprint, publicKey, new Date().toISOString())
  }

  /** The pins as SSH connections use them (core/ssh.ts). */
  get hostKeyPins (): HostKeyPins {
    return { pinned: host => this.hostKey(host), pin: (host, fp, key) => { this.pinHostKey(host, fp, key) } }
  }

  /** Forgets a host's pinned key (the next connection pins the key it meets); false when none was pinned. */
  forgetHostKey (host: string): boolean {
    return this.db.prepare('DELETE FROM host_keys WHERE host = ?').run(host).changes === 1
  }

  vms (): VmRow[] {
    return (this.db.prepare('SELECT * FROM vms ORDER BY name').all() as Array<Record<string, unknown>>).map(vmFromRow)
  }

  vm (name: string): VmRow | undefined {
    const r = this.db.prepare('SELECT * FROM vms WHERE name = ?').get(name) as Record<string, unknown> | undefined
    return r === undefined ? undefined : vmFromRow(r)
  }

  putVm (row: VmRow): void {
    this.db.prepare(`INSERT INTO vms (name, host, spec_hash, status, record, error, updated)
      VALUES (@name, @host, @specHash, @status, @record, @error, @now)
      ON CONFLICT(name) DO UPDATE SET host = excluded.host, spec_hash = excluded.spec_hash, status = excluded.status,
        record = excluded.record, error = excluded.error, updated = excluded.updated`)
      .run({
        name: row.name,
        host: row.host,
        specHash: row.specHash,
        status: row.status,
        record: row.record === undefined ? null : JSON.stringify(row.record),
        error: row.error ?? null,
        now: new Date().toISOString()
      })
  }

  deleteVm (name: string): void {
    this.db.prepare('DELETE FROM vms WHERE name = ?').run(name)
  }

  /** Appends to the journal (bounded: keeps the newest `keep` entries). */
  journal (kind: string, subject: string, detail: Record<string, unknown> = {}, keep = 10000): number {
    const tx = this.db.transaction(() => {
      const info = this.db.prepare('INSERT INTO journal (ts, kind, subject, detail) VALUES (?, ?, ?, ?)')
        .run(new Date().toISOString(), kind, subject, JSON.stringify(detail))
      const seq = Number(info.lastInsertRowid)
      if (seq % 100 === 0) this.db.prepare('DELETE FROM journal WHERE seq <= ?').run(seq - keep)
      return seq
    })
    return tx()
  }

  journalSince (seq: number, limit = 1000): JournalEntry[] {
    return (this.db.prepare('SELECT * FROM journal WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as Array<Record<string, string | number>>)
      .map(r => ({ seq: Number(r.seq), ts: String(r.ts), kind: String(r.kind), subject: String(r.subject), detail: JSON.parse(String(r.detail)) as Record<string, unknown> }))
  }

  /** Creates the event history table on first use (events/hub.ts owns its contents). */
  private ensureEvents (): void {
    if (this.eventsReady) return
    this.db.exec(`CREATE TABLE IF NOT EXISTS events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL, type TEXT NOT NULL, host TEXT, vm TEXT, data TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS events_vm ON events (vm, seq);`)
    this.eventsReady = true
  }

  /**
   * Appends events to the bounded history in one transaction and returns their sequence
   * numbers (strictly increasing across every process writing this supercloud, never reused
   * after pruning). Keeps the newest `keep` events.
   */
  appendEvents (rows: Array<Omit<EventRow, 'seq'>>, keep = 20000): number[] {
    this.ensureEvents()
    const insert = this.db.prepare('INSERT INTO events (ts, type, host, vm, data) VALUES (?, ?, ?, ?, ?)')
    return this.db.transaction(() => {
      const seqs = rows.map(r => Number(insert.run(r.ts, r.type, r.host ?? null, r.vm ?? null, r.data).lastInsertRowid))
      const last = seqs[seqs.length - 1]
      if (last !== undefined) this.db.prepare('DELETE FROM events WHERE seq <= ?').run(last - keep)
      return seqs
    })()
  }

  /** Stored events after `seq`, oldest first, optionally only those about one VM or host. */
  eventsSince (seq: number, opts: { limit?: number, vm?: string, host?: string } = {}): EventRow[] {
    this.ensureEvents()
    const where = ['seq > @seq']
    if (opts.vm !== undefined) where.push('vm = @vm')
    if (opts.host !== undefined) where.push('host = @host')
    return (this.db.prepare(`SELECT * FROM events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT @limit`)
      .all({ seq, vm: opts.vm ?? null, host: opts.host ?? null, limit: opts.limit ?? 1000 }) as Array<Record<string, unknown>>)
      .map(r => {
        const e: EventRow = { seq: Number(r.seq), ts: String(r.ts), type: String(r.type), data: String(r.data) }
        if (typeof r.host === 'string') e.host = r.host
        if (typeof r.vm === 'string') e.vm = r.vm
        return e
      })
  }

  /** Oldest stored sequence number (0 when empty) and the last one ever assigned (0 when none). */
  eventBounds (): { oldest: number, head: number } {
    this.ensureEvents()
    const o = this.db.prepare('SELECT MIN(seq) AS oldest FROM events').get() as { oldest: number | null }
    const h = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'events'").get() as { seq: number } | undefined
    return { oldest: o.oldest ?? 0, head: h?.seq ?? 0 }
  }

  /** Runs `fn` in one transaction. */
  transaction<T> (fn: () => T): T {
    return this.db.transaction(fn)()
  }

  isEmpty (): boolean {
    const s = this.snapshot()
    return s.networks.length === 0 && s.hosts.length === 0 && s.vms.length === 0
  }
}

function hostFromRow (r: Record<string, unknown>): HostRow {
  const row: HostRow = {
    name: String(r.name),
    site: String(r.site),
    driver: String(r.driver),
    specHash: String(r.spec_hash),
    status: r.status as ResourceStatus,
    bootstrapped: Number(r.bootstrapped) === 1
  }
  if (typeof r.record === 'string') row.record = JSON.parse(r.record) as HostRecord
  if (typeof r.accel === 'string') row.accel = r.accel
  if (typeof r.accel_reason === 'string') row.accelReason = r.accel_reason
  return row
}

function vmFromRow (r: Record<string, unknown>): VmRow {
  const row: VmRow = {
    name: String(r.name),
    host: String(r.host),
    specHash: String(r.spec_hash),
    status: r.status as ResourceStatus
  }
  if (typeof r.record === 'string') row.record = JSON.parse(r.record) as VmRecord
  if (typeof r.error === 'string') row.error = r.error
  return row
}

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export type OperationStatus = 'running' | 'completed' | 'failed' | 'cancelled'

/** One long-running action (up, down, migrate) as the state records it. */
export interface OperationRow {
  id: string
  kind: string
  /** What it acts on (a VM for migrate), when not the whole supercloud. */
  subject?: string
  /** user@machine that started it. */
  who: string
  pid: number
  started: string
  ended?: string
  status: OperationStatus
  /** Who asked it to stop (set by `supercloud cancel` / the dashboard), while it still runs. */
  cancelBy?: string
}

function toOperationRow (r: Record<string, unknown>): OperationRow {
  const row: OperationRow = { id: String(r.id), kind: String(r.kind), who: String(r.who), pid: Number(r.pid), started: String(r.started), status: String(r.status) as OperationStatus }
  if (typeof r.subject === 'string') row.subject = r.subject
  if (typeof r.ended === 'string') row.ended = r.ended
  if (typeof r.cancel_by === 'string') row.cancelBy = r.cancel_by
  return row
}
