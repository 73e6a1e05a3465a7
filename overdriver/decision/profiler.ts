/**
 * The workload profiler of one VM (seed 002 §6.2.1, pure): buckets of transient overload
 * durations; once `baseCount` transients were seen, the migration threshold becomes
 * mean + 3 sigma of those durations (the heuristic assumes they are normally distributed)
 * whenever that is lower than the current threshold. A migration changes the VM's overload
 * behaviour, so `reset()` starts learning anew from the initial threshold.
 */
import { DEFAULT_INITIAL_THRESHOLD_MS, DEFAULT_INTERVAL_MS, DEFAULT_PROFILER_BASE_COUNT } from '../constants.ts'

export interface ProfilerOptions {
  /** Threshold before anything is learnt, ms (default 120 s). */
  initialThresholdMs?: number
  /** Off: the threshold stays at its initial value; durations are still counted. Default on. */
  adaptive?: boolean
  /** Transient overloads recorded before adapting (default 10). */
  baseCount?: number
  /** Bucket width, ms: one monitoring interval (default 10 s). Also the lowest threshold. */
  bucketMs?: number
}

/** Serializable state. */
export interface ProfilerState {
  thresholdMs: number
  /** Bucket index (duration / bucketMs, rounded up) → count. */
  buckets: Record<string, number>
}

export interface ThresholdChange {
  fromMs: number
  toMs: number
  /** Transient overloads the estimate is based on. */
  samples: number
  meanMs: number
  sigmaMs: number
}

export class Profiler {
  readonly initialThresholdMs: number
  readonly adaptive: boolean
  readonly baseCount: number
  readonly bucketMs: number
  private s: ProfilerState

  constructor (opts: ProfilerOptions = {}, state?: ProfilerState) {
    this.initialThresholdMs = opts.initialThresholdMs ?? DEFAULT_INITIAL_THRESHOLD_MS
    this.adaptive = opts.adaptive ?? true
    this.baseCount = opts.baseCount ?? DEFAULT_PROFILER_BASE_COUNT
    this.bucketMs = opts.bucketMs ?? DEFAULT_INTERVAL_MS
    if (!(this.initialThresholdMs > 0)) throw new RangeError(`initialThresholdMs must be > 0, got ${this.initialThresholdMs}`)
    if (!(this.bucketMs > 0)) throw new RangeError(`bucketMs must be > 0, got ${this.bucketMs}`)
    if (!Number.isInteger(this.baseCount) || this.baseCount < 1) throw new RangeError(`baseCount must be an integer >= 1, got ${this.baseCount}`)
    this.s = state !== undefined ? structuredClone(state) : { thresholdMs: this.initialThresholdMs, buckets: {} }
  }

  get thresholdMs (): number { return this.s.thresholdMs }

  /** Transient overloads recorded since the last reset. */
  get samples (): number {
    return Object.values(this.s.buckets).reduce((a, b) => a + b, 0)
  }

  /** Bucket upper bounds (ms) → counts, ascending: the VM's learnt overload duration profile. */
  profile (): Array<{ durationMs: number, count: number }> {
    return Object.entries(this.s.buckets)
      .map(([k, count]) => ({ durationMs: Number(k) * this.bucketMs, count }))
      .sort((a, b) => a.durationMs - b.durationMs)
  }

  /** Mean and (population) standard deviation of the recorded durations, bucketed. */
  stats (): { meanMs: number, sigmaMs: number, samples: number } {
    const p = this.profile()
    const n = p.reduce((a, b) => a + b.count, 0)
    if (n === 0) return { meanMs: 0, sigmaMs: 0, samples: 0 }
    const mean = p.reduce((a, b) => a + b.durationMs * b.count, 0) / n
    const variance = p.reduce((a, b) => a + b.count * (b.durationMs - mean) ** 2, 0) / n
    return { meanMs: mean, sigmaMs: Math.sqrt(variance), samples: n }
  }

  /**
   * Records one transient overload that lasted `durationMs` and returns the threshold change
   * it caused, if any. Sustained overloads are not recorded (they lead to migration and a reset).
   */
  recordTransient (durationMs: number): ThresholdChange | undefined {
    if (!Number.isFinite(durationMs) || durationMs < 0) throw new RangeError(`duration must be a finite number >= 0, got ${durationMs}`)
    const bucket = String(Math.max(1, Math.ceil(durationMs / this.bucketMs - 1e-9)))
    this.s.buckets[bucket] = (this.s.buckets[bucket] ?? 0) + 1
    if (!this.adaptive) return undefined
    const { meanMs, sigmaMs, samples } = this.stats()
    if (samples < this.baseCount) return undefined
    const candidate = Math.max(this.bucketMs, meanMs + 3 * sigmaMs)
    if (candidate >= this.s.thresholdMs) return undefined
    const change = { fromMs: this.s.thresholdMs, toMs: candidate, samples, meanMs, sigmaMs }
    this.s.thresholdMs = candidate
    return change
  }

  /** Back to the initial threshold with no profile (after the VM migrated or got more memory). */
  reset (): void {
    this.s = { thresholdMs: this.initialThresholdMs, buckets: {} }
  }

  state (): ProfilerState {
    return structuredClone(this.s)
  }
}
