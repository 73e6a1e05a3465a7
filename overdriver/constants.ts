/**
 * Defaults of the Overdriver (seed 002 ch. 6.3: monitor every 10 s, an interval is overloaded
 * above 200 paging operations/s, sustained when 8 of the last 12 intervals were overloaded,
 * initial migration threshold 120 s). One place, so components merge their `init` with these.
 */

/** Size of a swap page and of the unit every paging counter counts in. */
export const PAGE_SIZE = 4096

export const DEFAULT_INTERVAL_MS = 10_000
export const DEFAULT_OVERLOAD_OPS_PER_SEC = 200
export const DEFAULT_WINDOW_SIZE = 12
export const DEFAULT_WINDOW_SUSTAINED = 8
export const DEFAULT_INITIAL_THRESHOLD_MS = 120_000
/**
 * Transient overloads the profiler records before it adapts the threshold. The seed gives no
 * number for transient durations (it needed about 25 sustained overloads for a full profile);
 * 10 is our choice and is configurable (`adaptive: { base: N }`).
 */
export const DEFAULT_PROFILER_BASE_COUNT = 10
/**
 * Consecutive normal intervals that end an overload episode. One quiet interval inside an
 * oscillating overload does not end it; the sliding window is what classifies oscillation.
 */
export const DEFAULT_QUIET_INTERVALS = 3
/**
 * Intervals after a VM arrived on a host (or its allocation changed) that are not observed: the
 * guest is still reading back pages from its repositories and settling into its new memory.
 */
export const DEFAULT_ARRIVAL_GRACE_INTERVALS = 3
/** A decided migration that nobody reported done or failed within this time counts as failed. */
export const DEFAULT_MIGRATION_TIMEOUT_MS = 600_000
/** Confidence for the capacity plan (seed: "with probability 0.97"). */
export const DEFAULT_CONFIDENCE = 0.97
