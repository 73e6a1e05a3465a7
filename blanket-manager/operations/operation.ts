/**
 * Operations (Incus's model): every long-running action (`up`, `down`, `migrate`, later
 * evacuations) runs as an operation with an id. It is recorded in the state while it runs, its
 * typed progress goes into the event stream (`operation.*` events, so `supercloud events
 * --follow` and the dashboard show another terminal's `up` step by step), and it can be
 * cancelled from anywhere that reaches the state: Ctrl-C in its own terminal, `supercloud
 * cancel ID` in another, or the dashboard. A cancel request is a mark in the state that the
 * operation polls for; it then aborts its AbortSignal, which every step already honours.
 */
import { randomBytes } from 'node:crypto'
import { CancelledError, SupercloudError } from '../../core/errors.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { EventInput } from '../events/schema.ts'
import type { OperationRow, OperationStatus } from '../state/store.ts'

export type OperationKind = 'up' | 'down' | 'migrate' | 'evacuate'

/** What an operation needs of the state (StateStore has these). */
export interface OperationStore {
  insertOperation: (row: Omit<OperationRow, 'ended' | 'cancelBy' | 'status'>) => void
  finishOperation: (id: string, status: Exclude<OperationStatus, 'running'>, ended: string) => void
  operation: (id: string) => OperationRow | undefined
}

export interface OperationDeps {
  store: OperationStore
  /** Publishes into the supercloud's event stream (EventHub.publish). */
  publish: (ev: EventInput) => void
  /** user@machine of whoever runs this process. */
  who: string
  pid?: number
  /** How often a running operation looks for a cancel request; default 250 ms. */
  pollMs?: number
  now?: () => number
}

/** What the work of an operation gets: its id, a signal that aborts on any cancel, and its progress sink. */
export interface OperationContext {
  id: string
  signal: AbortSignal
  onProgress: (ev: ProgressEvent) => void
}

export interface OperationRequest {
  kind: OperationKind
  /** What it acts on (a VM for migrate). */
  subject?: string
  /** The caller's own cancel (Ctrl-C). */
  signal?: AbortSignal
  /** The caller's own progress display. */
  onProgress?: (ev: ProgressEvent) => void
  /** Told the id as soon as the operation is recorded (the CLI prints it). */
  onStart?: (id: string) => void
}

export function newOperationId (): string {
  return randomBytes(4).toString('hex')
}

/**
 * Runs `work` as an operation: recorded, its progress published, cancellable by id. Ends with
 * operation.completed, .failed or .cancelled in the event stream, and the row's status; the
 * error (a CancelledError when cancelled from elsewhere) is rethrown to the caller.
 */
export async function runOperation<T> (deps: OperationDeps, req: OperationRequest, work: (op: OperationContext) => Promise<T>): Promise<T> {
  const now = deps.now ?? Date.now
  const id = newOperationId()
  const started = now()
  const base = req.subject !== undefined ? { subject: req.subject } : {}
  deps.store.insertOperation({ id, kind: req.kind, ...base, who: deps.who, pid: deps.pid ?? process.pid, started: new Date(started).toISOString() })
  deps.publish({ type: 'operation.started', ...(req.kind === 'migrate' && req.subject !== undefined ? { vm: req.subject } : {}), data: { operation: id, kind: req.kind, by: deps.who, ...base } })
  req.onStart?.(id)

  const ac = new AbortController()
  let cancelBy: string | undefined
  const onOuter = (): void => { cancelBy ??= `${deps.who} (interrupt)`; ac.abort() }
  if (req.signal?.aborted === true) onOuter()
  req.signal?.addEventListener('abort', onOuter, { once: true })
  const poll = setInterval(() => {
    let row: OperationRow | undefined
    try { row = deps.store.operation(id) } catch { return /* state closed (down) */ }
    if (row?.cancelBy !== undefined && !ac.signal.aborted) { cancelBy = row.cancelBy; ac.abort() }
  }, deps.pollMs ?? 250)
  poll.unref()

  const onProgress = (ev: ProgressEvent): void => {
    req.onProgress?.(ev)
    deps.publish({ type: 'operation.progress', data: { operation: id, subject: ev.subject, phase: ev.phase, message: ev.message, ...(ev.fraction !== undefined ? { fraction: ev.fraction } : {}) } })
  }
  const finish = (status: Exclude<OperationStatus, 'running'>): number => {
    clearInterval(poll)
    req.signal?.removeEventListener('abort', onOuter)
    const end = now()
    // `down` removes the supercloud's state with everything else: its end has nowhere to go.
    try { deps.store.finishOperation(id, status, new Date(end).toISOString()) } catch { /* state removed */ }
    return end - started
  }
  const publishEnd = (ev: EventInput): void => { try { deps.publish(ev) } catch { /* state removed (down) */ } }
  try {
    const result = await work({ id, signal: ac.signal, onProgress })
    publishEnd({ type: 'operation.completed', data: { operation: id, kind: req.kind, durationMs: finish('completed') } })
    return result
  } catch (err) {
    if (ac.signal.aborted || (err instanceof SupercloudError && err.code === 'SC_CANCELLED')) {
      publishEnd({ type: 'operation.cancelled', data: { operation: id, kind: req.kind, durationMs: finish('cancelled'), ...(cancelBy !== undefined ? { by: cancelBy } : {}) } })
      throw err instanceof SupercloudError && err.code === 'SC_CANCELLED' ? err : new CancelledError(`${req.kind} (operation ${id})${cancelBy !== undefined ? ` by ${cancelBy}` : ''}`)
    }
    const code = err instanceof SupercloudError ? err.code : undefined
    publishEnd({ type: 'operation.failed', data: { operation: id, kind: req.kind, durationMs: finish('failed'), error: (err as Error).message, ...(code !== undefined ? { code } : {}) } })
    throw err
  }
}

/** Operation ids are 8 hex digits. */
export function isOperationId (s: string): boolean {
  return /^[0-9a-f]{8}$/.test(s)
}
