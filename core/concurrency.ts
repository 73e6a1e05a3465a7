/**
 * Bounded concurrency for fan-out (to hosts, mostly): run an async function over a list with
 * at most `limit` calls in flight, results in the list's order. The controller talks to its
 * hosts through these instead of starting every host's SSH handshake and calls at once
 * (docs/scale.md). Pure: no I/O.
 */

/** Default number of hosts the controller talks to at once (`SUPERCLOUD_HOST_CONCURRENCY`). */
export const DEFAULT_HOST_CONCURRENCY = 16

/** The limit a setting asks for: a positive integer, else `fallback` (unset, empty, 0, negative or not a number). */
export function concurrencyLimit (raw: string | undefined, fallback = DEFAULT_HOST_CONCURRENCY): number {
  const n = Number(raw ?? '')
  return raw !== undefined && raw.trim() !== '' && Number.isInteger(n) && n > 0 ? n : fallback
}

/** Runs `step(i)` for i = 0 .. count-1, at most `limit` at once, in order of i; no new step once `stop()`. */
async function pool (count: number, limit: number, step: (i: number) => Promise<void>, stop: () => boolean): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count && !stop()) await step(next++)
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(Math.floor(limit), count)) }, worker))
}

/**
 * Like Promise.all over `items.map(fn)`, with at most `limit` calls of `fn` running at once:
 * the results in order, or the first failure (calls already running go on, as with
 * Promise.all; no new one starts after a failure).
 */
export async function mapLimited<T, R> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let failed = false
  await pool(items.length, limit, async i => {
    try {
      out[i] = await fn(items[i] as T, i)
    } catch (err) {
      failed = true
      throw err
    }
  }, () => failed)
  return out
}

/** Like Promise.allSettled over `items.map(fn)`, with at most `limit` calls running at once: every item is tried. */
export async function settleLimited<T, R> (items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<Array<PromiseSettledResult<R>>> {
  const out = new Array<PromiseSettledResult<R>>(items.length)
  await pool(items.length, limit, async i => {
    try {
      out[i] = { status: 'fulfilled', value: await fn(items[i] as T, i) }
    } catch (reason) {
      out[i] = { status: 'rejected', reason }
    }
  }, () => false)
  return out
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
