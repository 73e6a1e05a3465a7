/**
 * What both stores share: the conversions between table rows and the row types (one schema,
 * the same column names in SQLite and PostgreSQL), and the methods built on the primitives
 * (the prefix, the snapshot, the supercloud lock with its check for moves in progress).
 */
import { randomBytes } from 'node:crypto'
import { hostname, userInfo } from 'node:os'
import type { HostRecord } from '../../drivers/cloud.ts'
import type { HostKeyPins, PinnedHostKey } from '../../core/ssh.ts'
import { VmMovingError } from '../../core/errors.ts'
import type { EventRow, HostRow, NetworkRow, OperationRow, OperatorRow, OperationStatus, ResourceStatus, StateLocks, StateSnapshot, VmRecord, VmRow } from './types.ts'

type Row = Record<string, unknown>

export function hostFromRow (r: Row): HostRow {
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

export function vmFromRow (r: Row): VmRow {
  const row: VmRow = { name: String(r.name), host: String(r.host), specHash: String(r.spec_hash), status: r.status as ResourceStatus }
  if (typeof r.record === 'string') row.record = JSON.parse(r.record) as VmRecord
  if (typeof r.error === 'string') row.error = r.error
  return row
}

export function networkFromRow (r: Row): NetworkRow {
  return { driver: String(r.driver ?? ''), specHash: String(r.spec_hash ?? ''), status: r.status as ResourceStatus }
}

export function operationFromRow (r: Row): OperationRow {
  const row: OperationRow = { id: String(r.id), kind: String(r.kind), who: String(r.who), pid: Number(r.pid), started: String(r.started), status: String(r.status) as OperationStatus }
  if (typeof r.subject === 'string') row.subject = r.subject
  if (typeof r.ended === 'string') row.ended = r.ended
  if (typeof r.cancel_by === 'string') row.cancelBy = r.cancel_by
  return row
}

export function eventFromRow (r: Row): EventRow {
  const e: EventRow = { seq: Number(r.seq), ts: String(r.ts), type: String(r.type), data: String(r.data) }
  if (typeof r.host === 'string') e.host = r.host
  if (typeof r.vm === 'string') e.vm = r.vm
  return e
}

export function operatorFromRow (r: Row): OperatorRow {
  return { name: String(r.name), publicKey: String(r.public_key), added: String(r.added), by: String(r.added_by) }
}

/** A host row's columns, in the order of the stores' INSERTs. */
export function hostColumns (row: HostRow, now: string): unknown[] {
  return [row.name, row.site, row.driver, row.specHash, row.status, row.record === undefined ? null : JSON.stringify(row.record),
    row.accel ?? null, row.accelReason ?? null, row.bootstrapped ? 1 : 0, now]
}

/** A VM row's columns, in the order of the stores' INSERTs. */
export function vmColumns (row: VmRow, now: string): unknown[] {
  return [row.name, row.host, row.specHash, row.status, row.record === undefined ? null : JSON.stringify(row.record), row.error ?? null, now]
}

/** user@machine of whoever runs this process, as operations and locks record it. */
export function operatorName (): string {
  let user = process.env.USER ?? 'unknown'
  try { user = userInfo().username } catch { /* no passwd entry */ }
  return `${user}@${hostname()}`
}

/** The stores' methods derived from their primitives. */
export abstract class StoreBase {
  abstract readonly locks: StateLocks
  private release?: () => void

  abstract getMeta (key: string): string | undefined
  abstract setMeta (key: string, value: string): void
  abstract networks (): NetworkRow[]
  abstract hosts (): HostRow[]
  abstract vms (): VmRow[]
  abstract hostKey (host: string): PinnedHostKey | undefined
  abstract pinHostKey (host: string, fingerprint: string, publicKey: string): void

  lock (purpose = 'a command'): void {
    if (this.release !== undefined) return
    const release = this.locks.takeState(purpose)
    const moving = this.locks.moves()[0]
    if (moving !== undefined) {
      release()
      throw new VmMovingError(moving.vm, moving.pid, moving.holder)
    }
    this.release = release
  }

  unlock (): void {
    this.release?.()
    this.release = undefined
  }

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

  get hostKeyPins (): HostKeyPins {
    return { pinned: host => this.hostKey(host), pin: (host, fp, key) => { this.pinHostKey(host, fp, key) } }
  }

  isEmpty (): boolean {
    const s = this.snapshot()
    return s.networks.length === 0 && s.hosts.length === 0 && s.vms.length === 0
  }
}
