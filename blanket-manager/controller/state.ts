/**
 * Typed accessors over the controller's meta keys in the state store (the `meta` table holds
 * strings). Every key the controller uses is here, with its value's type; a value is checked
 * when it is read, so no caller casts. A value of the wrong shape (a state file edited by hand,
 * or written by another version) is a StateValueError, except where the controller always
 * tolerated it: a disk-reuse record or a migration record that does not check is taken as absent.
 *
 *   context               the spec's sites, WAN and hosts (DriverContext for `down` without a spec)
 *   placement-overrides   VM -> host changes made by `migrate` (planner/placement.ts)
 *   disk-reuse:<vm>       the disk images `vm` left on a host (migration/disk-reuse.ts)
 *   migration:<vm>        the migration of `vm` in progress (recovered by the next command)
 *   wires-applied         the wiring hash of the last wires sync
 *   wire-changes          `wire connect` / `wire disconnect` on top of the spec's wires
 *   connector-ids         VirtualWire connector ids, kept stable across runs
 *   prefix                the per-supercloud prefix (chosen by StateStore.prefix)
 */
import type { DriverContext } from '../../drivers/cloud.ts'
import { MIGRATION_MODES, type MigrationMode } from '../../core/migration.ts'
import { SupercloudError } from '../../core/errors.ts'
import { isMigrationId } from '../../core/names.ts'
import type { WireSpec } from '../../core/spec.ts'
import type { DiskReuse } from '../migration/disk-reuse.ts'
import type { PlacementOverride } from '../planner/placement.ts'
import type { StateStore } from '../state/store.ts'

/** A meta value in the state store does not have the shape its key holds. */
export class StateValueError extends SupercloudError {
  constructor (readonly key: string, detail: string) {
    super('SC_STATE_VALUE', `state value '${key}' is not valid: ${detail}`)
  }
}

/** What `context` keeps of the DriverContext. */
export type SavedContext = Pick<DriverContext, 'sites' | 'wan' | 'hosts'>

/** A runtime wiring change set. */
export interface WireChanges {
  added: WireSpec[]
  /** wireKey()s of the spec's wires that were disconnected. */
  removed: string[]
}

/** The record of a migration in progress (`migration:<vm>`). */
export interface MigrationRecord {
  from: string
  to: string
  mode: MigrationMode
  id: string
  /** The migration id whose departed images the destination reuses. */
  reuse?: string
  startedAt: string
}

/** The state store's meta keys, typed. */
export interface ControllerState {
  context: () => SavedContext | undefined
  setContext: (c: SavedContext) => void
  overrides: () => Record<string, PlacementOverride>
  setOverrides: (o: Record<string, PlacementOverride>) => void
  diskReuse: (vm: string) => DiskReuse | undefined
  setDiskReuse: (vm: string, r: DiskReuse | undefined) => void
  migration: (vm: string) => MigrationRecord | undefined
  setMigration: (vm: string, m: MigrationRecord | undefined) => void
  wiresApplied: () => string
  setWiresApplied: (hash: string) => void
  wireChanges: () => WireChanges
  setWireChanges: (c: WireChanges) => void
  connectorIds: () => Record<string, number>
  setConnectorIds: (ids: Record<string, number>) => void
  /** The prefix once chosen (StateStore.prefix chooses it). */
  prefix: () => string | undefined
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const isStr = (v: unknown): v is string => typeof v === 'string'
const isMode = (v: unknown): v is MigrationMode => MIGRATION_MODES.some(m => m === v)

function parse (key: string, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new StateValueError(key, (err as Error).message)
  }
}

function checkContext (v: unknown): SavedContext {
  if (!isObj(v) || !isObj(v.sites) || !isObj(v.wan) || typeof v.wan.delayMs !== 'number') throw new StateValueError('context', 'expected { sites, wan: { delayMs }, hosts? }')
  if (v.hosts !== undefined && !isObj(v.hosts)) throw new StateValueError('context', 'hosts is not an object')
  // The spec loader checked these when they were written; the shapes above are what is read back.
  const c: SavedContext = { sites: v.sites as SavedContext['sites'], wan: v.wan as unknown as SavedContext['wan'] }
  if (v.hosts !== undefined) c.hosts = v.hosts as SavedContext['hosts']
  return c
}

function checkOverrides (v: unknown): Record<string, PlacementOverride> {
  if (!isObj(v)) throw new StateValueError('placement-overrides', 'expected an object')
  const out: Record<string, PlacementOverride> = {}
  for (const [vm, o] of Object.entries(v)) {
    if (!isObj(o) || !isStr(o.host) || (o.specHost !== undefined && !isStr(o.specHost))) throw new StateValueError('placement-overrides', `${vm}: expected { host, specHost? }`)
    out[vm] = isStr(o.specHost) ? { host: o.host, specHost: o.specHost } : { host: o.host }
  }
  return out
}

function isWireEnd (v: unknown): v is WireSpec['a'] {
  return isObj(v) && isStr(v.component) && isStr(v.port)
}

function checkWireChanges (v: unknown): WireChanges {
  if (!isObj(v) || !Array.isArray(v.added) || !Array.isArray(v.removed)) throw new StateValueError('wire-changes', 'expected { added: [], removed: [] }')
  const added: WireSpec[] = []
  for (const w of v.added as unknown[]) {
    if (!isObj(w) || !isWireEnd(w.a) || !isWireEnd(w.b)) throw new StateValueError('wire-changes', 'a wire is not { a: { component, port }, b: { component, port } }')
    added.push({ a: { component: w.a.component, port: w.a.port }, b: { component: w.b.component, port: w.b.port } })
  }
  const removed = (v.removed as unknown[]).filter(isStr)
  if (removed.length !== v.removed.length) throw new StateValueError('wire-changes', 'removed holds a non-string')
  return { added, removed }
}

function checkConnectorIds (v: unknown): Record<string, number> {
  if (!isObj(v)) throw new StateValueError('connector-ids', 'expected an object')
  const out: Record<string, number> = {}
  for (const [k, id] of Object.entries(v)) {
    if (typeof id !== 'number' || !Number.isInteger(id)) throw new StateValueError('connector-ids', `${k}: not an integer`)
    out[k] = id
  }
  return out
}

/** A disk-reuse record, or undefined when there is none or it does not check (as before). */
function readDiskReuse (text: string | undefined): DiskReuse | undefined {
  if (text === undefined || text === '') return undefined
  try {
    const r: unknown = JSON.parse(text)
    return isObj(r) && isStr(r.host) && isMigrationId(r.id) ? { host: r.host, id: r.id } : undefined
  } catch {
    return undefined
  }
}

/** A migration record, or undefined when there is none or it lacks its ends (recovery then just clears the VM's status). */
function readMigration (key: string, text: string | undefined): MigrationRecord | undefined {
  if (text === undefined || text === '') return undefined
  const v = parse(key, text)
  if (!isObj(v) || !isStr(v.from) || !isStr(v.to)) return undefined
  const m: MigrationRecord = {
    from: v.from,
    to: v.to,
    mode: isMode(v.mode) ? v.mode : 'auto',
    id: isStr(v.id) ? v.id : '',
    startedAt: isStr(v.startedAt) ? v.startedAt : ''
  }
  if (isStr(v.reuse)) m.reuse = v.reuse
  return m
}

/** The typed meta keys of one state store. */
export function controllerState (store: Pick<StateStore, 'getMeta' | 'setMeta'>): ControllerState {
  const read = <T>(key: string, check: (v: unknown) => T, absent: T): T => {
    const text = store.getMeta(key)
    return text === undefined ? absent : check(parse(key, text))
  }
  const write = (key: string, v: unknown): void => { store.setMeta(key, JSON.stringify(v)) }
  return {
    context: () => { const t = store.getMeta('context'); return t === undefined ? undefined : checkContext(parse('context', t)) },
    setContext: c => { write('context', { sites: c.sites, wan: c.wan, hosts: c.hosts }) },
    overrides: () => read('placement-overrides', checkOverrides, {}),
    setOverrides: o => { write('placement-overrides', o) },
    diskReuse: vm => readDiskReuse(store.getMeta(`disk-reuse:${vm}`)),
    setDiskReuse: (vm, r) => { store.setMeta(`disk-reuse:${vm}`, r !== undefined ? JSON.stringify(r) : '') },
    migration: vm => readMigration(`migration:${vm}`, store.getMeta(`migration:${vm}`)),
    setMigration: (vm, m) => { store.setMeta(`migration:${vm}`, m !== undefined ? JSON.stringify(m) : '') },
    wiresApplied: () => store.getMeta('wires-applied') ?? '',
    setWiresApplied: hash => { store.setMeta('wires-applied', hash) },
    wireChanges: () => read('wire-changes', checkWireChanges, { added: [], removed: [] }),
    setWireChanges: c => { write('wire-changes', c) },
    connectorIds: () => read('connector-ids', checkConnectorIds, {}),
    setConnectorIds: ids => { write('connector-ids', ids) },
    prefix: () => store.getMeta('prefix')
  }
}
