/**
 * Bounded concurrency for fan-out (to hosts, mostly): run an async function over a list with
 * at most `limit` calls in flight, results in the list's order. The controller talks to its
 * hosts through these instead of starting every host's SSH handshake and calls at once
 * (docs/scale.md). Pure: no I/O. The queue is p-limit's.
 */
import pLimit from 'p-limit'

/** Default number of hosts the controller talks to at once (`SUPERCLOUD_HOST_CONCURRENCY`). */
export const DEFAULT_HOST_CONCURRENCY = 16

/** The limit a setting asks for: a positive integer, else `fallback` (unset, empty, 0, negative or not a number). */
export function concurrencyLimit (raw: string | undefined, fallback = DEFAULT_HOST_CONCURRENCY): number {
  const n = Number(raw ?? '')
  return raw !== undefined && raw.trim() !== '' && Number.isInteger(n) && n > 0 ? n : fallback
}

/**
 * Like Promise.all over `items.map(fn)`, with at most `limit` calls of `fn` running at once:
 * the results in order, or the first failure (calls already running go on, as with
 * Promise.all; no new one starts after a failure).
 */
export async function mapLimited<T, R> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const gate = pLimit(atLeastOne(limit))
  return await Promise.all(items.map(async (item, i) => await gate(async () => {
    try {
      return await fn(item, i)
    } catch (err) {
      // Calls not started yet never start (their promises are dropped with the queue).
      gate.clearQueue()
      throw err
    }
  })))
}

/** Like Promise.allSettled over `items.map(fn)`, with at most `limit` calls running at once: every item is tried. */
export async function settleLimited<T, R> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<Array<PromiseSettledResult<R>>> {
  const gate = pLimit(atLeastOne(limit))
  return await Promise.allSettled(items.map(async (item, i) => await gate(async () => await fn(item, i))))
}

/** p-limit's concurrency from ours: a whole number of at least 1, or no limit (Infinity). */
function atLeastOne (limit: number): number {
  if (limit === Infinity) return Infinity
  return Number.isFinite(limit) ? Math.max(1, Math.floor(limit)) : 1
}

/** Items grouped by a key, groups in order of first appearance (e.g. a host's VMs, to fan out per host). */
export function groupBy<T> (items: readonly T[], key: (item: T) => string): Array<[string, T[]]> {
  const groups = new Map<string, T[]>()
  for (const item of items) {
    const k = key(item)
    const list = groups.get(k)
    if (list === undefined) groups.set(k, [item]); else list.push(item)
  }
  return [...groups]
}

/**
 * Calls `fn` every `ms` milliseconds, skipping a tick while the previous call still runs (so a
 * slow round never overlaps the next). Does not keep the process alive; `stop()` ends it.
 */
export function repeatWithoutOverlap (fn: () => Promise<unknown>, ms: number): { stop: () => void } {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    void fn().finally(() => { running = false })
  }, ms)
  timer.unref()
  return { stop: () => { clearInterval(timer) } }
}
