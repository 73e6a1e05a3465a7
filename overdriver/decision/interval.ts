/** Classification of one monitoring interval from its paging rate (pure). */
import { DEFAULT_OVERLOAD_OPS_PER_SEC } from '../constants.ts'

export type IntervalClass = 'overloaded' | 'normal'

/**
 * 'overloaded' when the VM paged more than `threshold` operations per second in the interval
 * (strictly above: at exactly 200 ops/s the interval is normal), else 'normal'.
 * A very low paging rate is innocuous (the guest pages a little even when healthy), hence the threshold.
 * Throws RangeError for a negative or non-finite rate or threshold.
 */
export function classifyInterval (pagingOpsPerSec: number, threshold = DEFAULT_OVERLOAD_OPS_PER_SEC): IntervalClass {
  if (!Number.isFinite(pagingOpsPerSec) || pagingOpsPerSec < 0) throw new RangeError(`paging rate must be a finite number >= 0, got ${pagingOpsPerSec}`)
  if (!Number.isFinite(threshold) || threshold < 0) throw new RangeError(`overload threshold must be a finite number >= 0, got ${threshold}`)
  return pagingOpsPerSec > threshold ? 'overloaded' : 'normal'
}

/** Paging counters of one VM at one instant (cumulative, in pages). */
export interface PagingSample {
  /** Milliseconds on any monotonic clock. */
  atMs: number
  /** Pages read from the swap device since the export started (swap-ins). */
  readPages: number
  /** Pages written to the swap device since the export started (swap-outs). */
  writePages: number
}

/**
 * Paging operations per second between two samples of the same counters (reads + writes).
 * A counter that went backwards (the export restarted) counts from zero.
 */
export function pagingRate (prev: PagingSample, next: PagingSample): number {
  const dt = (next.atMs - prev.atMs) / 1000
  if (!(dt > 0)) throw new RangeError(`samples must be in time order (dt = ${dt} s)`)
  const reads = next.readPages >= prev.readPages ? next.readPages - prev.readPages : next.readPages
  const writes = next.writePages >= prev.writePages ? next.writePages - prev.writePages : next.writePages
  return (reads + writes) / dt
}
