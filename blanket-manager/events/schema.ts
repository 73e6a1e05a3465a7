/**
 * The supercloud event schema: one versioned tagged union (discriminated by `type`) for
 * everything an SRE watches: hosts, agents, VMs, VirtualWire connectors, migrations and
 * Overdriver decisions. Every event carries `schema` (this file's version), a sequence
 * number `seq` (strictly increasing per supercloud, assigned when the event is stored), an ISO
 * timestamp `ts`, and the `host` / `vm` it concerns.
 *
 * The table EVENT_TYPES is the single source of truth: the TypeScript types are derived from
 * it, and so is the runtime validator (`validateEventInput`) used where events enter the
 * controller from outside (agents' pushes, the HTTP publisher), so a malformed event is
 * rejected with a reason instead of reaching subscribers.
 *
 * Pure: no I/O.
 */

import { PROGRESS_PHASES } from '../../core/progress.ts'

/** Version of this schema; bumped on any incompatible change (a field removed or retyped). */
export const EVENT_SCHEMA_VERSION = 1

type Scalar = 'string' | 'number' | 'boolean' | 'string[]'
/** A payload field: a scalar kind, optional with a trailing '?', or an enumeration of strings. */
type FieldSpec = Scalar | `${Scalar}?` | readonly string[]
interface TypeSpec {
  /** Which of the common `host` / `vm` fields this event must carry. */
  readonly requires: ReadonlyArray<'host' | 'vm'>
  readonly data: Readonly<Record<string, FieldSpec>>
  /** One line for docs/events.md and `supercloud events --help`. */
  readonly doc: string
}

/**
 * Every event type, what it requires and its payload (`data`). Units: bytes, pages per
 * second (paging rates and Overdriver thresholds), milliseconds.
 */
export const EVENT_TYPES = {
  'host.created': { requires: ['host'], data: { site: 'string', driver: 'string', address: 'string?' }, doc: 'a cloud driver made the host' },
  'host.ready': { requires: ['host'], data: { accel: 'string?', accelReason: 'string?', address: 'string?' }, doc: 'the host is bootstrapped and its agent answers' },
  'host.gone': { requires: ['host'], data: { reason: 'string' }, doc: 'the host was deleted or disappeared' },
  'host.interruption': { requires: ['host'], data: { deadline: 'string', action: ['terminate', 'stop', 'hibernate'], noticeSeconds: 'number?', detail: 'string?' }, doc: 'the provider announced it will reclaim the host at `deadline` (EC2 spot: `spot/instance-action` in the instance metadata)' },
  'host.rebalance': { requires: ['host'], data: { noticeTime: 'string' }, doc: 'the provider recommends moving off the host (EC2: a rebalance recommendation, the host is at elevated risk of interruption)' },
  'agent.up': { requires: ['host'], data: { build: 'string?', pid: 'number?' }, doc: "the controller reached the host's agent (again)" },
  'agent.down': { requires: ['host'], data: { reason: 'string' }, doc: "the controller lost the host's agent" },
  'vm.created': { requires: ['host', 'vm'], data: { requestedBytes: 'number', allocatedBytes: 'number', cpus: 'number' }, doc: 'the VM was defined on its host' },
  'vm.running': { requires: ['host', 'vm'], data: { accel: 'string?' }, doc: 'the guest booted (ready marker seen)' },
  'vm.stopped': { requires: ['vm'], data: { reason: 'string?' }, doc: 'the guest stopped' },
  'vm.failed': { requires: ['vm'], data: { error: 'string', code: 'string?' }, doc: 'creating or running the guest failed' },
  'vm.deleted': { requires: ['vm'], data: { reason: 'string?' }, doc: 'the VM was removed' },
  'vm.stats': {
    requires: ['host', 'vm'],
    data: {
      requestedBytes: 'number?',
      allocatedBytes: 'number?',
      balloonBytes: 'number',
      residentBytes: 'number',
      swappedLocalBytes: 'number?',
      swappedRemoteBytes: 'number?',
      pagingRate: 'number?'
    },
    doc: 'memory figures of a running guest, sampled every few seconds'
  },
  'connector.created': { requires: [], data: { connector: 'number', wire: 'string', hosts: 'string[]?' }, doc: 'a VirtualWire connector (its ID is the VNI) was set up' },
  'connector.repointed': { requires: [], data: { connector: 'number', wire: 'string?', from: 'string', to: 'string' }, doc: 'a connector endpoint moved from one host to another' },
  'connector.destroyed': { requires: [], data: { connector: 'number', wire: 'string?' }, doc: 'a connector was removed' },
  'migration.started': { requires: ['vm'], data: { migration: 'string', from: 'string', to: 'string', reason: 'string?' }, doc: 'a live migration began' },
  'migration.progress': {
    requires: ['vm'],
    data: { migration: 'string', phase: 'string?', transferredBytes: 'number', totalBytes: 'number', remainingBytes: 'number?', dirtyRate: 'number?' },
    doc: 'bytes moved so far'
  },
  'migration.switchover': { requires: ['vm'], data: { migration: 'string', downtimeMs: 'number?' }, doc: 'the guest paused for the final switchover' },
  'migration.completed': { requires: ['vm'], data: { migration: 'string', durationMs: 'number', downtimeMs: 'number?' }, doc: 'the guest runs on the target' },
  'migration.failed': { requires: ['vm'], data: { migration: 'string', error: 'string', code: 'string?' }, doc: 'the migration failed; the guest stays on the source' },
  'migration.cancelled': { requires: ['vm'], data: { migration: 'string', reason: 'string?' }, doc: 'the migration was cancelled' },
  'operation.started': { requires: [], data: { operation: 'string', kind: ['up', 'down', 'migrate', 'evacuate'], by: 'string', subject: 'string?' }, doc: 'a long-running action (up, down, migrate) began; `supercloud cancel OPERATION` stops it' },
  'operation.progress': { requires: [], data: { operation: 'string', subject: 'string', phase: PROGRESS_PHASES, message: 'string', fraction: 'number?' }, doc: 'one step of an operation (the same lines its terminal prints)' },
  'operation.completed': { requires: [], data: { operation: 'string', kind: ['up', 'down', 'migrate', 'evacuate'], durationMs: 'number' }, doc: 'the operation finished' },
  'operation.failed': { requires: [], data: { operation: 'string', kind: ['up', 'down', 'migrate', 'evacuate'], durationMs: 'number', error: 'string', code: 'string?' }, doc: 'the operation failed; the message says what and what was left as it was' },
  'operation.cancelled': { requires: [], data: { operation: 'string', kind: ['up', 'down', 'migrate', 'evacuate'], durationMs: 'number', by: 'string?' }, doc: 'the operation was cancelled (Ctrl-C, `supercloud cancel`, or the dashboard)' },
  'overload.started': { requires: ['vm'], data: { pagingRate: 'number', threshold: 'number' }, doc: "Overdriver: the guest's paging rate crossed the threshold" },
  'overload.classified': { requires: ['vm'], data: { classification: ['transient', 'sustained'], pagingRate: 'number?' }, doc: 'Overdriver: the overload is transient (cooperative swap) or sustained (migrate)' },
  'overload.swap': { requires: ['vm'], data: { enabled: 'boolean', reason: 'string?' }, doc: 'Overdriver: cooperative swap turned on or off' },
  'overload.threshold': { requires: [], data: { threshold: 'number', previous: 'number?' }, doc: 'Overdriver: the overload threshold changed (for a VM, a host, or all when neither is given)' },
  'overload.migration-decided': { requires: ['vm'], data: { target: 'string', reason: 'string' }, doc: 'Overdriver: decided to migrate the guest' },
  'overload.ended': { requires: ['vm'], data: { durationMs: 'number' }, doc: "Overdriver: the guest's paging rate is back below the threshold" }
} as const satisfies Record<string, TypeSpec>

export type EventTypes = typeof EVENT_TYPES
export type EventType = keyof EventTypes
export const EVENT_TYPE_NAMES = Object.keys(EVENT_TYPES) as EventType[]

type Base<S> =
  S extends 'string' | 'string?' ? string
    : S extends 'number' | 'number?' ? number
      : S extends 'boolean' | 'boolean?' ? boolean
        : S extends 'string[]' | 'string[]?' ? string[]
          : S extends readonly string[] ? S[number]
            : never
type RequiredKeys<F> = { [K in keyof F]: F[K] extends `${string}?` ? never : K }[keyof F]
type OptionalKeys<F> = { [K in keyof F]: F[K] extends `${string}?` ? K : never }[keyof F]
type Simplify<T> = { [K in keyof T]: T[K] } & {}
type Payload<F> = Simplify<{ -readonly [K in RequiredKeys<F>]: Base<F[K]> } & { -readonly [K in OptionalKeys<F>]?: Base<F[K]> }>

/** The payload of events of type T. */
export type EventData<T extends EventType> = Payload<EventTypes[T]['data']>

type Located<T extends EventType> = Simplify<
  { host?: string, vm?: string } & { [K in EventTypes[T]['requires'][number]]: string }
>

/** What a publisher hands the hub: an event without `schema`, `seq` (and usually without `ts`). */
export type EventInputOf<T extends EventType> = Simplify<{ type: T, ts?: string } & Located<T> & { data: EventData<T> }>
export type EventInput = { [T in EventType]: EventInputOf<T> }[EventType]

/** One stored event. */
export type EventOf<T extends EventType> = Simplify<{ schema: typeof EVENT_SCHEMA_VERSION, seq: number, ts: string, type: T } & Located<T> & { data: EventData<T> }>
export type SupercloudEvent = { [T in EventType]: EventOf<T> }[EventType]

export function isEventType (t: unknown): t is EventType {
  return typeof t === 'string' && Object.prototype.hasOwnProperty.call(EVENT_TYPES, t)
}

export type ValidationResult = { ok: true, event: EventInput } | { ok: false, issues: string[] }

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
const MAX_STRING = 4096

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkField (path: string, spec: FieldSpec, v: unknown, issues: string[]): void {
  if (Array.isArray(spec)) {
    if (typeof v !== 'string' || !spec.includes(v)) issues.push(`${path}: must be one of ${spec.join(', ')}`)
    return
  }
  const kind = (spec as string).replace(/\?$/, '')
  if (kind === 'string') {
    if (typeof v !== 'string') issues.push(`${path}: must be a string`)
    else if (v.length > MAX_STRING) issues.push(`${path}: longer than ${MAX_STRING} characters`)
  } else if (kind === 'number') {
    if (typeof v !== 'number' || !Number.isFinite(v)) issues.push(`${path}: must be a finite number`)
  } else if (kind === 'boolean') {
    if (typeof v !== 'boolean') issues.push(`${path}: must be true or false`)
  } else if (kind === 'string[]') {
    if (!Array.isArray(v) || v.some(x => typeof x !== 'string')) issues.push(`${path}: must be a list of strings`)
  }
}

/**
 * Checks an event that comes from outside the controller (an agent's push, the HTTP
 * publisher): known type, the host/vm it needs, every payload field typed, no unknown field.
 * `seq` and `schema` are never taken from outside. Returns the event to publish or the issues.
 */
export function validateEventInput (raw: unknown): ValidationResult {
  const issues: string[] = []
  if (!isObject(raw)) return { ok: false, issues: ['event: must be an object'] }
  const type = raw.type
  if (!isEventType(type)) return { ok: false, issues: [`type: unknown event type ${JSON.stringify(type)}`] }
  const spec: TypeSpec = EVENT_TYPES[type]
  for (const k of Object.keys(raw)) {
    if (!['type', 'ts', 'host', 'vm', 'data', 'schema', 'seq'].includes(k)) issues.push(`${k}: unknown field`)
  }
  if (raw.schema !== undefined && raw.schema !== EVENT_SCHEMA_VERSION) issues.push(`schema: version ${String(raw.schema)} is not supported (this controller speaks ${EVENT_SCHEMA_VERSION})`)
  if (raw.ts !== undefined && (typeof raw.ts !== 'string' || !ISO_RE.test(raw.ts) || Number.isNaN(Date.parse(raw.ts)))) issues.push('ts: must be an ISO 8601 timestamp')
  for (const k of ['host', 'vm'] as const) {
    const v = raw[k]
    if (v === undefined) {
      if (spec.requires.includes(k)) issues.push(`${k}: required for ${type}`)
    } else if (typeof v !== 'string' || !NAME_RE.test(v)) issues.push(`${k}: must be a name (letters, digits, . _ -)`)
  }
  const data = raw.data ?? {}
  if (!isObject(data)) {
    issues.push('data: must be an object')
  } else {
    for (const [field, fs] of Object.entries(spec.data)) {
      const v = data[field]
      const optional = typeof fs === 'string' && fs.endsWith('?')
      if (v === undefined) {
        if (!optional) issues.push(`data.${field}: required for ${type}`)
        continue
      }
      checkField(`data.${field}`, fs, v, issues)
    }
    for (const k of Object.keys(data)) if (!(k in spec.data)) issues.push(`data.${k}: unknown field for ${type}`)
  }
  if (issues.length > 0) return { ok: false, issues }
  const ev: Record<string, unknown> = { type, data: { ...data } }
  if (raw.ts !== undefined) ev.ts = raw.ts
  if (raw.host !== undefined) ev.host = raw.host
  if (raw.vm !== undefined) ev.vm = raw.vm
  return { ok: true, event: ev as EventInput }
}

/** Checks a stored event (as read back from history or received by a client). */
export function isSupercloudEvent (raw: unknown): raw is SupercloudEvent {
  if (!isObject(raw)) return false
  if (raw.schema !== EVENT_SCHEMA_VERSION) return false
  if (typeof raw.seq !== 'number' || !Number.isInteger(raw.seq) || raw.seq < 1) return false
  if (typeof raw.ts !== 'string') return false
  const { schema: _s, seq: _q, ...rest } = raw
  return validateEventInput(rest).ok
}

/** The families of events, for filters: `host`, `vm`, `migration`, ... */
export function eventFamily (t: EventType): string {
  return t.split('.')[0] ?? t
}

/**
 * Whether an event type matches a filter pattern: an exact type (`vm.stats`), a family with a
 * wildcard (`migration.*`), or a negation (`!vm.stats`).
 */
export function typeMatches (pattern: string, t: EventType): boolean {
  if (pattern.startsWith('!')) return !typeMatches(pattern.slice(1), t)
  if (pattern.endsWith('.*')) return t.startsWith(pattern.slice(0, -1))
  return pattern === t
}
