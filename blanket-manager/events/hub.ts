/**
 * EventHub: publishes events into the supercloud's bounded history (the `events` table of its
 * SQLite state) and fans them out to subscribers in sequence order.
 *
 * - The store assigns `seq` (SQLite AUTOINCREMENT), so every process that publishes for one
 *   supercloud (a `supercloud up` run, `supercloud serve`, Overdriver) shares one order.
 *   A hub delivers what its own process publishes at once and, with `follow()`, what other
 *   processes wrote (it polls the table).
 * - `subscribe({ since })` replays history after `since` (read lazily, page by page, so a long
 *   history never floods a queue), then continues live with no gap and no duplicate.
 * - Slow consumers: a subscriber's queue of live events is bounded. One that falls further
 *   behind is closed with a reason (`SlowConsumerError`, code SC_EVENTS_SLOW_CONSUMER), never
 *   silently skipped: it must re-read state and may resume from the last seq it received.
 */
import { channel } from 'node:diagnostics_channel'
import type { EventRow, StateStore } from '../state/store.ts'
import { SupercloudError } from '../../core/errors.ts'
import {
  EVENT_SCHEMA_VERSION, isEventType, typeMatches, validateEventInput,
  type EventInput, type EventType, type SupercloudEvent
} from './schema.ts'

/** Default number of events the history keeps. */
export const DEFAULT_HISTORY = 20000
/** Default bound on a subscriber's queue of undelivered live events. */
export const DEFAULT_QUEUE_LIMIT = 2000
/** How often `follow()` looks for events other processes stored. */
export const DEFAULT_FOLLOW_MS = 300

/** A subscriber fell too far behind and was disconnected. */
export class SlowConsumerError extends SupercloudError {
  /** Seq of the last event the subscriber took from its queue. */
  readonly lastSeq: number
  constructor (limit: number, lastSeq: number) {
    super('SC_EVENTS_SLOW_CONSUMER', `slow consumer: more than ${limit} events queued; re-read state and resume after seq ${lastSeq}`)
    this.lastSeq = lastSeq
  }
}

/** An event from outside (an agent, the HTTP publisher) failed validation. */
export class EventRejectedError extends SupercloudError {
  readonly issues: string[]
  constructor (source: string, issues: string[]) {
    super('SC_EVENT_INVALID', `event from ${source} rejected: ${issues.join('; ')}`)
    this.issues = issues
  }
}

/** diagnostics_channel names (published with the event / the subscription's reason). */
export const EVENT_CHANNELS = {
  published: 'supercloud:events:published',
  rejected: 'supercloud:events:rejected',
  subscriberClosed: 'supercloud:events:subscriber-closed'
} as const

export interface EventFilter {
  vm?: string
  host?: string
  /** Type patterns (see typeMatches): an event passes if it matches any positive pattern (or there is none) and no negative one. */
  types?: string[]
}

export function matchesFilter (ev: SupercloudEvent, f: EventFilter): boolean {
  if (f.vm !== undefined && ev.vm !== f.vm) return false
  if (f.host !== undefined && ev.host !== f.host) return false
  const types = f.types ?? []
  const pos = types.filter(p => !p.startsWith('!'))
  if (pos.length > 0 && !pos.some(p => typeMatches(p, ev.type))) return false
  if (types.filter(p => p.startsWith('!')).some(p => !typeMatches(p, ev.type))) return false
  return true
}

export interface SubscribeOptions extends EventFilter {
  /** Replay events with seq > since first (default: the current head, i.e. live only). */
  since?: number
  /** Bound on queued live events before the subscriber is closed (default DEFAULT_QUEUE_LIMIT). */
  queueLimit?: number
}

/** Why a subscription ended. */
export type CloseReason =
  | { kind: 'closed' }
  | { kind: 'slow', error: SlowConsumerError }
  | { kind: 'hub-closed' }

/** Something the replay tells the subscriber: events it asked for were already pruned. */
export interface Gap { kind: 'gap', from: number, to: number }

export type SubscriptionItem = { kind: 'event', event: SupercloudEvent } | Gap

export interface Subscription extends AsyncIterable<SubscriptionItem> {
  /** Next item; undefined once the subscription is closed (see `closeReason`). */
  next: () => Promise<SubscriptionItem | undefined>
  /** Items ready now without waiting (replay page or queued live events), at most `max`. */
  takeReady: (max: number) => SubscriptionItem[]
  /** Seq of the last event handed out. */
  readonly cursor: number
  /** False while history is being replayed, true once live. */
  readonly live: boolean
  readonly closeReason: CloseReason | undefined
  close: () => void
  /** Called once when the subscription ends, whatever the reason. */
  onClose: (fn: (r: CloseReason) => void) => void
}

export interface EventHubOptions {
  history?: number
  queueLimit?: number
  /** Replay page size. */
  pageSize?: number
}

export interface HubStats {
  head: number
  oldest: number
  subscribers: number
  published: Partial<Record<EventType, number>>
  rejected: number
  slowDisconnects: number
}

export class EventHub {
  private readonly subs = new Set<Sub>()
  private readonly taps = new Set<(ev: SupercloudEvent) => void>()
  private delivered: number
  private followTimer?: NodeJS.Timeout
  private unwatch: (() => void) | undefined
  private closed = false
  private readonly published: Partial<Record<EventType, number>> = {}
  private rejectedCount = 0
  private slowCount = 0
  readonly history: number
  readonly queueLimit: number
  readonly pageSize: number

  constructor (readonly store: StateStore, opts: EventHubOptions = {}) {
    this.history = opts.history ?? DEFAULT_HISTORY
    this.queueLimit = opts.queueLimit ?? DEFAULT_QUEUE_LIMIT
    this.pageSize = opts.pageSize ?? 500
    this.delivered = store.eventBounds().head
  }

  /** Stores one event (assigning seq and, unless given, ts) and delivers it. */
  publish (input: EventInput): SupercloudEvent {
    const [ev] = this.publishMany([input])
    if (ev === undefined) throw new Error('unreachable')
    return ev
  }

  /** Stores several events in one transaction and delivers them in order. */
  publishMany (inputs: EventInput[]): SupercloudEvent[] {
    if (this.closed) throw new SupercloudError('SC_EVENTS_CLOSED', 'the event hub is closed')
    if (inputs.length === 0) return []
    const now = new Date().toISOString()
    const rows = inputs.map(i => {
      const r: Omit<EventRow, 'seq'> = { ts: i.ts ?? now, type: i.type, data: JSON.stringify(i.data) }
      if (i.host !== undefined) r.host = i.host
      if (i.vm !== undefined) r.vm = i.vm
      return r
    })
    const seqs = this.store.appendEvents(rows, this.history)
    const events = rows.map((r, i) => fromRow({ ...r, seq: seqs[i] ?? 0 }))
    for (const ev of events) if (ev !== undefined) this.published[ev.type] = (this.published[ev.type] ?? 0) + 1
    this.pump()
    return events.filter((e): e is SupercloudEvent => e !== undefined)
  }

  /**
   * Validates an event that came from outside (`source` names it in the error) and publishes
   * it; throws EventRejectedError (and counts it) when malformed. `override` pins fields the
   * source may not choose (an agent's events always carry its own host).
   */
  ingest (raw: unknown, source: string, override: { host?: string } = {}): SupercloudEvent {
    const r = validateEventInput(raw)
    if (!r.ok) {
      this.rejectedCount++
      const err = new EventRejectedError(source, r.issues)
      rejectedChannel.publish({ source, issues: r.issues })
      throw err
    }
    const input = { ...r.event, ...(override.host !== undefined ? { host: override.host } : {}) } as EventInput
    return this.publish(input)
  }

  /** Delivers stored events this hub has not delivered yet (its own and other processes'). */
  pump (): void {
    for (;;) {
      const rows = this.store.eventsSince(this.delivered, { limit: this.pageSize })
      for (const row of rows) {
        this.delivered = row.seq
        const ev = fromRow(row)
        if (ev === undefined) continue
        if (publishedChannel.hasSubscribers) publishedChannel.publish(ev)
        for (const fn of [...this.taps]) fn(ev)
        for (const s of [...this.subs]) s.offer(ev)
      }
      if (rows.length < this.pageSize) return
    }
  }

  /**
   * A synchronous listener for every event delivered live, in seq order (for in-process
   * state such as the live model; never queued, so never a slow consumer). Returns the remover.
   */
  tap (fn: (ev: SupercloudEvent) => void): () => void {
    this.taps.add(fn)
    return () => { this.taps.delete(fn) }
  }

  /**
   * Delivers events other processes publish (for long-lived processes; until close()): told by
   * the store when it can (PostgreSQL's NOTIFY; then polling every 5 s is only a backstop),
   * else polling it every `intervalMs`.
   */
  follow (intervalMs = DEFAULT_FOLLOW_MS): void {
    if (this.followTimer !== undefined) return
    const pump = (): void => { try { this.pump() } catch { /* store closed */ } }
    this.unwatch = this.store.watchEvents?.(pump)
    // Keeps the process alive (a follower waits for events); close() stops it.
    this.followTimer = setInterval(pump, this.unwatch !== undefined ? Math.max(intervalMs, 5000) : intervalMs)
  }

  /** Events in the history after `since` (oldest first), filtered. */
  list (since = 0, filter: EventFilter = {}, limit = 1000): SupercloudEvent[] {
    const out: SupercloudEvent[] = []
    let cursor = since
    while (out.length < limit) {
      const rows = this.store.eventsSince(cursor, { limit: this.pageSize, ...dbFilter(filter) })
      for (const row of rows) {
        cursor = row.seq
        const ev = fromRow(row)
        if (ev !== undefined && matchesFilter(ev, filter)) out.push(ev)
        if (out.length >= limit) break
      }
      if (rows.length < this.pageSize) break
    }
    return out
  }

  bounds (): { oldest: number, head: number } {
    return this.store.eventBounds()
  }

  subscribe (opts: SubscribeOptions = {}): Subscription {
    if (this.closed) throw new SupercloudError('SC_EVENTS_CLOSED', 'the event hub is closed')
    const s = new Sub(this, opts, opts.queueLimit ?? this.queueLimit, r => {
      this.subs.delete(s)
      if (r.kind === 'slow') this.slowCount++
      if (subscriberClosedChannel.hasSubscribers) subscriberClosedChannel.publish(r)
    })
    this.subs.add(s)
    return s
  }

  stats (): HubStats {
    const b = this.bounds()
    return { ...b, subscribers: this.subs.size, published: { ...this.published }, rejected: this.rejectedCount, slowDisconnects: this.slowCount }
  }

  /** Ends every subscription (reason hub-closed) and stops following. Leaves the store open. */
  close (): void {
    if (this.closed) return
    this.closed = true
    if (this.followTimer !== undefined) clearInterval(this.followTimer)
    this.unwatch?.()
    for (const s of [...this.subs]) s.end({ kind: 'hub-closed' })
  }

  /** @internal used by subscriptions to replay. */
  readPage (after: number, filter: EventFilter): { rows: EventRow[], full: boolean } {
    const rows = this.store.eventsSince(after, { limit: this.pageSize, ...dbFilter(filter) })
    return { rows, full: rows.length >= this.pageSize }
  }

  /** @internal seq of the newest event delivered live. */
  get deliveredSeq (): number { return this.delivered }
}

const publishedChannel = channel(EVENT_CHANNELS.published)
const rejectedChannel = channel(EVENT_CHANNELS.rejected)
const subscriberClosedChannel = channel(EVENT_CHANNELS.subscriberClosed)

function dbFilter (f: EventFilter): { vm?: string, host?: string } {
  const o: { vm?: string, host?: string } = {}
  if (f.vm !== undefined) o.vm = f.vm
  if (f.host !== undefined) o.host = f.host
  return o
}

/** A stored row as an event; undefined for rows of an unknown type (written by a newer version). */
export function fromRow (row: EventRow): SupercloudEvent | undefined {
  if (!isEventType(row.type)) return undefined
  let data: unknown
  try { data = JSON.parse(row.data) } catch { return undefined }
  const ev: Record<string, unknown> = { schema: EVENT_SCHEMA_VERSION, seq: row.seq, ts: row.ts, type: row.type }
  if (row.host !== undefined) ev.host = row.host
  if (row.vm !== undefined) ev.vm = row.vm
  ev.data = data
  return ev as SupercloudEvent
}

class Sub implements Subscription {
  private readonly queue: SubscriptionItem[] = []
  private replaying: boolean
  /** Seq of the last event handed out. */
  private pos: number
  /** Seq of the last event queued or passed over (replay and live never repeat one). */
  private enq: number
  private reason?: CloseReason
  private waiter?: (v: SubscriptionItem | undefined) => void
  private readonly closeFns: Array<(r: CloseReason) => void> = []

  constructor (private readonly hub: EventHub, private readonly filter: SubscribeOptions, private readonly limit: number, private readonly onEnd: (r: CloseReason) => void) {
    const head = hub.deliveredSeq
    const since = filter.since === undefined ? head : Math.max(0, filter.since)
    this.pos = since
    this.enq = since
    this.replaying = since < head
    if (this.replaying) {
      const { oldest } = hub.bounds()
      const firstKept = oldest === 0 ? head + 1 : oldest
      if (firstKept > since + 1) this.queue.push({ kind: 'gap', from: since + 1, to: firstKept - 1 })
    }
  }

  get cursor (): number { return this.pos }
  get live (): boolean { return !this.replaying }
  get closeReason (): CloseReason | undefined { return this.reason }

  /** A live event from the hub (offered in seq order). */
  offer (ev: SupercloudEvent): void {
    if (this.reason !== undefined || this.replaying || ev.seq <= this.enq) return
    this.enq = ev.seq
    if (!matchesFilter(ev, this.filter)) return
    const item: SubscriptionItem = { kind: 'event', event: ev }
    if (this.waiter !== undefined && this.queue.length === 0) {
      const w = this.waiter
      this.waiter = undefined
      this.pos = ev.seq
      w(item)
      return
    }
    this.queue.push(item)
    if (this.queue.length > this.limit) this.end({ kind: 'slow', error: new SlowConsumerError(this.limit, this.pos) })
  }

  /** Replays the next page of history when the queue ran dry. */
  private refill (): void {
    while (this.replaying && this.queue.length === 0) {
      const { rows, full } = this.hub.readPage(this.enq, this.filter)
      for (const row of rows) {
        this.enq = row.seq
        const ev = fromRow(row)
        if (ev !== undefined && matchesFilter(ev, this.filter)) this.queue.push({ kind: 'event', event: ev })
      }
      if (!full) {
        // Everything stored was read: from now on live delivery takes over where replay ended.
        this.replaying = false
        this.enq = Math.max(this.enq, this.hub.deliveredSeq)
      }
    }
  }

  private shift (): SubscriptionItem | undefined {
    if (this.queue.length === 0) this.refill()
    const item = this.queue.shift()
    if (item?.kind === 'event') this.pos = item.event.seq
    return item
  }

  takeReady (max: number): SubscriptionItem[] {
    const out: SubscriptionItem[] = []
    while (this.reason === undefined && out.length < max) {
      const i = this.shift()
      if (i === undefined) break
      out.push(i)
    }
    return out
  }

  async next (): Promise<SubscriptionItem | undefined> {
    if (this.reason !== undefined) return undefined
    const i = this.shift()
    if (i !== undefined) return i
    return await new Promise(resolve => { this.waiter = resolve })
  }

  end (r: CloseReason): void {
    if (this.reason !== undefined) return
    this.reason = r
    this.queue.length = 0
    const w = this.waiter
    this.waiter = undefined
    w?.(undefined)
    this.onEnd(r)
    for (const fn of this.closeFns) fn(r)
  }

  close (): void { this.end({ kind: 'closed' }) }

  onClose (fn: (r: CloseReason) => void): void {
    if (this.reason !== undefined) fn(this.reason)
    else this.closeFns.push(fn)
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<SubscriptionItem> {
    for (;;) {
      const i = await this.next()
      if (i === undefined) return
      yield i
    }
  }
}

/**
 * The path for events an agent pushes over its SSH channel (`AgentClient.onEvent`): each is
 * validated and published with the agent's host pinned; malformed ones are rejected
 * (counted, reported to `onRejected`) and never reach subscribers.
 */
export function ingestAgentEvents (hub: EventHub, client: { host: string, onEvent: (fn: (ev: unknown) => void) => () => void }, onRejected: (err: EventRejectedError) => void = () => {}): () => void {
  return client.onEvent(raw => {
    try {
      hub.ingest(raw, `agent on ${client.host}`, { host: client.host })
    } catch (err) {
      if (err instanceof EventRejectedError) onRejected(err)
      else throw err
    }
  })
}
