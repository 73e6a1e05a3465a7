/**
 * The state interface the controller, CLI, events and operations use, and its row types. Two
 * stores implement it: SQLite (sqlite-store.ts, the default: one file per supercloud under the
 * operator's home) and PostgreSQL (pg/store.ts: `state: postgres://...` or SUPERCLOUD_STATE, for
 * a team sharing one supercloud). The interface is synchronous, as better-sqlite3 is: every
 * change is durable when the call returns (the controller records an action *before* it runs it),
 * and `transaction(fn)` runs a synchronous `fn` with no other work in between. The PostgreSQL
 * store keeps that contract by running node-postgres in a worker thread (pg/bridge.ts).
 */
import type { GuestPlugged } from '../../drivers/hypervisor.ts'
import type { HostRecord } from '../../drivers/cloud.ts'
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

/** Who holds a lock, as a blocked command reports it. */
export interface LockHolder {
  pid: number
  /** user@machine, when the store knows it. */
  who?: string
  /** When it took the lock (ISO time). */
  since?: string
  /** What it holds the lock for (up, down, migrate web1, ...). */
  purpose?: string
}

/** A VM another process is moving now, and who. */
export interface MoveInProgress { vm: string, pid: number, holder?: LockHolder }

/** The locks of one supercloud (lock.ts + vm-lock.ts on SQLite, advisory locks on PostgreSQL). */
export interface StateLocks {
  /** Takes the supercloud's lock; throws StateLockedError naming the holder. Returns its release. */
  takeState: (purpose: string) => () => void
  /** Takes a VM's move lock; throws VmMovingError naming the holder. Returns its release. */
  takeMove: (vm: string, purpose: string) => () => void
  /** The VMs other processes move now (call while holding the supercloud lock). */
  moves: () => MoveInProgress[]
  /** Takes the leadership of `serve` (one runs the Overdriver loop and the pollers); throws StateLockedError naming the leader. */
  takeLeader: () => () => void
}

/** An operator granted login to the hosts (`supercloud access grant`): a public key only, never a private one. */
export interface OperatorRow {
  name: string
  /** The OpenSSH public key line (`type base64 comment`), checked when granted. */
  publicKey: string
  /** When it was granted (ISO time) and by whom (user@machine). */
  added: string
  by: string
}

/** Where a supercloud's state lives (`supercloud state show`). */
export interface StateLocation {
  kind: 'sqlite' | 'postgres'
  /** The file (SQLite) or the URL without its password and the schema (PostgreSQL). */
  where: string
  /** The schema version of the store. */
  schemaVersion: number
}

/** A supercloud's state: see the file comment. */
export interface StateStore {
  /** The supercloud's local directory (SSH key, driver files; the SQLite file). */
  readonly dir: string
  /** Where the state lives, for messages: the SQLite file, or the URL (no password) and schema. */
  readonly path: string
  readonly locks: StateLocks
  location: () => StateLocation
  /**
   * Takes the supercloud's exclusive lock (one mutating command at a time). Throws
   * StateLockedError while another process holds it, VmMovingError (and lets it go again) while
   * another process moves a VM. `purpose` names what it is held for in a blocked command's message.
   */
  lock: (purpose?: string) => void
  unlock: () => void
  close: () => void
  /** Removes this supercloud's state from the store (`down`; the SQLite file goes with the directory) and closes it. */
  destroy: () => void
  getMeta: (key: string) => string | undefined
  setMeta: (key: string, value: string) => void
  /** Every meta key and value (for `state push` / `pull`). */
  allMeta: () => Array<{ key: string, value: string }>
  insertOperation: (row: Omit<OperationRow, 'ended' | 'cancelBy' | 'status'>) => void
  finishOperation: (id: string, status: Exclude<OperationStatus, 'running'>, ended: string) => void
  /** Asks a running operation to stop (it polls for this); false when no such operation runs. */
  requestCancel: (id: string, by: string) => boolean
  operation: (id: string) => OperationRow | undefined
  /** Operations newest first; `running` only those not ended. */
  operations: (opts?: { running?: boolean, limit?: number }) => OperationRow[]
  /** The per-supercloud prefix for kernel object names, chosen once and kept. */
  prefix: (isTaken?: (p: string) => boolean) => string
  snapshot: () => StateSnapshot
  networks: () => NetworkRow[]
  putNetwork: (row: NetworkRow) => void
  deleteNetwork: (driver: string) => void
  hosts: () => HostRow[]
  host: (name: string) => HostRow | undefined
  putHost: (row: HostRow) => void
  deleteHost: (name: string) => void
  /** The SSH host key pinned for a host: fingerprint (SHA256:...), public key (`type base64`), when pinned. */
  hostKey: (host: string) => PinnedHostKey | undefined
  /** Pins a host's key (replacing an earlier pin); `since` defaults to now. */
  pinHostKey: (host: string, fingerprint: string, publicKey: string, since?: string) => void
  /** The pins as SSH connections use them (core/ssh.ts). */
  readonly hostKeyPins: HostKeyPins
  /** Every pinned host key (for `state push` / `pull`). */
  hostKeys: () => Array<PinnedHostKey & { host: string }>
  /** Forgets a host's pinned key; false when none was pinned. */
  forgetHostKey: (host: string) => boolean
  /** The operators granted login with `access grant`, by name. */
  operators: () => OperatorRow[]
  /** Grants (or replaces) an operator's key. */
  putOperator: (row: OperatorRow) => void
  /** Revokes an operator; false when none had that name. */
  deleteOperator: (name: string) => boolean
  vms: () => VmRow[]
  vm: (name: string) => VmRow | undefined
  putVm: (row: VmRow) => void
  deleteVm: (name: string) => void
  /** Appends to the journal (bounded: keeps the newest `keep` entries). */
  journal: (kind: string, subject: string, detail?: Record<string, unknown>, keep?: number) => number
  journalSince: (seq: number, limit?: number) => JournalEntry[]
  /**
   * Appends events in one transaction and returns their sequence numbers (strictly increasing
   * across every process writing this supercloud, never reused after pruning). Keeps the newest `keep`.
   */
  appendEvents: (rows: Array<Omit<EventRow, 'seq'>>, keep?: number) => number[]
  /** Stored events after `seq`, oldest first, optionally only those about one VM or host. */
  eventsSince: (seq: number, opts?: { limit?: number, vm?: string, host?: string }) => EventRow[]
  /** Oldest stored sequence number (0 when empty) and the last one ever assigned (0 when none). */
  eventBounds: () => { oldest: number, head: number }
  /**
   * Calls `fn` soon after any process appended events (PostgreSQL: LISTEN/NOTIFY); returns the
   * remover. Absent when the store cannot tell (SQLite: followers poll).
   */
  watchEvents?: (fn: () => void) => () => void
  /** Runs `fn` in one transaction. */
  transaction: <T>(fn: () => T) => T
  isEmpty: () => boolean
}
