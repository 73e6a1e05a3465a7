/**
 * The sliding window of one VM's monitoring intervals (pure state machine).
 *
 * An overload *episode* starts with the first overloaded interval and ends after
 * `quietIntervals` consecutive normal ones. While it lasts it is *transient* until either
 *  - at least `sustainedCount` of the last `size` intervals were overloaded (the seed's
 *    8-of-12 window, which catches oscillating overload), or
 *  - it has lasted longer than the current threshold (initial 120 s, lowered by the profiler),
 * and from then on it is *sustained* until it ends.
 */
import { DEFAULT_INTERVAL_MS, DEFAULT_QUIET_INTERVALS, DEFAULT_WINDOW_SIZE, DEFAULT_WINDOW_SUSTAINED } from '../constants.ts'

export interface OverloadWindowOptions {
  /** Intervals in the window (default 12). */
  size?: number
  /** Overloaded intervals in the window that make an overload sustained (default 8). */
  sustainedCount?: number
  /** Length of one monitoring interval, ms (default 10 s). */
  intervalMs?: number
  /** Consecutive normal intervals that end an episode (default 3). */
  quietIntervals?: number
}

export type EpisodeClass = 'transient' | 'sustained'

/** Serializable state (persisted by the agent so a restart keeps the window). */
export interface OverloadWindowState {
  /** Oldest first; true = overloaded. At most `size` entries. */
  intervals: boolean[]
  episode?: {
    /** Start of the first overloaded interval, ms. */
    startMs: number
    /** End of the latest overloaded interval, ms. */
    lastOverloadedMs: number
    quietRun: number
    class: EpisodeClass
    /** Which rule made it sustained. */
    sustainedBy?: 'window' | 'duration'
  }
}

/** What one observation changed. */
export interface WindowStep {
  /** The interval that was just observed started an episode. */
  started: boolean
  /** The episode became sustained with this interval. */
  becameSustained: boolean
  /** Set when the episode ended with this interval. */
  ended?: { durationMs: number, class: EpisodeClass, startMs: number }
  /** The episode after this interval (undefined when none is open). */
  class?: EpisodeClass
  /** Duration of the open episode (first overloaded interval start .. last overloaded interval end). */
  durationMs: number
  overloadedInWindow: number
}

export class OverloadWindow {
  readonly size: number
  readonly sustainedCount: number
  readonly intervalMs: number
  readonly quietIntervals: number
  private s: OverloadWindowState = { intervals: [] }

  constructor (opts: OverloadWindowOptions = {}, state?: OverloadWindowState) {
    this.size = opts.size ?? DEFAULT_WINDOW_SIZE
    this.sustainedCount = opts.sustainedCount ?? DEFAULT_WINDOW_SUSTAINED
    this.intervalMs = opts.intervalMs ?? DEFAULT_INTERVAL_MS
    this.quietIntervals = opts.quietIntervals ?? DEFAULT_QUIET_INTERVALS
    for (const [k, v] of [['size', this.size], ['sustainedCount', this.sustainedCount], ['quietIntervals', this.quietIntervals]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${k} must be an integer >= 1, got ${v}`)
    }
    if (this.sustainedCount > this.size) throw new RangeError(`sustainedCount ${this.sustainedCount} is above the window size ${this.size}`)
    if (!(this.intervalMs > 0)) throw new RangeError(`intervalMs must be > 0, got ${this.intervalMs}`)
    if (state !== undefined) this.s = structuredClone(state)
  }

  get overloadedInWindow (): number {
    return this.s.intervals.filter(Boolean).length
  }

  /** The open episode's class, or undefined when the VM is not overloaded. */
  get class (): EpisodeClass | undefined {
    return this.s.episode?.class
  }

  /** Snapshot for persistence. */
  state (): OverloadWindowState {
    return structuredClone(this.s)
  }

  /** Forget everything (after a migration the VM's behaviour changes). */
  reset (): void {
    this.s = { intervals: [] }
  }

  /**
   * Records the interval that ended at `endMs` and classifies the open episode with the
   * current duration threshold (`thresholdMs`, strictly longer is sustained).
   */
  observe (overloaded: boolean, endMs: number, thresholdMs: number): WindowStep {
    if (!Number.isFinite(endMs)) throw new RangeError(`endMs must be finite, got ${endMs}`)
    if (!(thresholdMs > 0)) throw new RangeError(`thresholdMs must be > 0, got ${thresholdMs}`)
    this.s.intervals.push(overloaded)
    while (this.s.intervals.length > this.size) this.s.intervals.shift()
    const count = this.overloadedInWindow
    let started = false
    let becameSustained = false
    let ended: WindowStep['ended']
    let ep = this.s.episode
    if (overloaded) {
      if (ep === undefined) {
        ep = { startMs: endMs - this.intervalMs, lastOverloadedMs: endMs, quietRun: 0, class: 'transient' }
        this.s.episode = ep
        started = true
      } else {
        ep.lastOverloadedMs = endMs
        ep.quietRun = 0
      }
      if (ep.class === 'transient') {
        const byWindow = count >= this.sustainedCount
        const byDuration = ep.lastOverloadedMs - ep.startMs > thresholdMs
        if (byWindow || byDuration) {
          ep.class = 'sustained'
          ep.sustainedBy = byWindow ? 'window' : 'duration'
          becameSustained = true
        }
      }
    } else if (ep !== undefined) {
      ep.quietRun++
      if (ep.quietRun >= this.quietIntervals) {
        ended = { durationMs: ep.lastOverloadedMs - ep.startMs, class: ep.class, startMs: ep.startMs }
        this.s.episode = undefined
        ep = undefined
      }
    }
    return {
      started,
      becameSustained,
      ...(ended !== undefined ? { ended } : {}),
      ...(ep !== undefined ? { class: ep.class } : {}),
      durationMs: ep !== undefined ? ep.lastOverloadedMs - ep.startMs : 0,
      overloadedInWindow: count
    }
  }

  /** Which rule made the open episode sustained, if it is. */
  get sustainedBy (): 'window' | 'duration' | undefined {
    return this.s.episode?.sustainedBy
  }
}
