/**
 * Postcopy recovery, the decisions (pure, no I/O): what the source does with a postcopy migration
 * whose stream broke or stalls. After the switch to postcopy the guest runs on the destination and
 * pulls the pages it still lacks from the source: the guest's state is split between the hosts,
 * and killing either QEMU loses it. QEMU 7.2 can pause such a migration (`migrate-pause`, on both
 * sides) and resume it on a new channel (`migrate-recover` on the destination, `migrate` with
 * `resume: true` on the source); migration.ts does that on the actions decided here:
 *   - `postcopy-active` with no byte sent for `stallMs`: the link is silently gone (a firewall
 *     dropping packets leaves TCP waiting for many minutes): `pause` the stream;
 *   - `postcopy-paused` (QEMU saw the stream break, or we paused it): `resume` (the destination
 *     listens again, the source reconnects), retried with a backoff while the path is down; a
 *     failed connect leaves QEMU 7.2 in `postcopy-paused`, so every attempt is a clean one;
 *   - `postcopy-recover` with no progress for `stallMs` (the new channel stalls as well): `unstick`
 *     (yank the channel: back to `postcopy-paused`);
 *   - `postcopy-active` again after a break: `resumed`;
 *   - broken for longer than `boundMs`: `give-up` (the caller reports where the guest is and
 *     kills nothing: the operator can retry).
 */

/** Default bound on a postcopy migration staying broken: 3 minutes. */
export const POSTCOPY_RECOVERY_BOUND_MS = 180_000
/** Default time without a byte sent in postcopy before the stream counts as stalled. */
export const POSTCOPY_STALL_MS = 4_000

export interface RecoveryPolicy {
  boundMs: number
  stallMs: number
}

export interface RecoverySample {
  /** QEMU's migration status on the source. */
  status: string
  /** Bytes QEMU has sent (query-migrate ram.transferred). */
  transferred: number
  now: number
}

export interface RecoveryState {
  lastBytes: number
  /** When `lastBytes` last grew (or postcopy started). */
  lastMoveAt: number
  /** When the stream was first seen broken (stall or pause); undefined while healthy. */
  brokenSince?: number
  /** Resume attempts since the break. */
  attempts: number
  /** Earliest time of the next resume attempt. */
  nextAttemptAt: number
}

export type RecoveryAction =
  | { kind: 'none' }
  | { kind: 'pause', reason: string }
  | { kind: 'resume', attempt: number }
  | { kind: 'unstick', reason: string }
  | { kind: 'resumed', brokenMs: number, attempts: number }
  | { kind: 'give-up', brokenMs: number, attempts: number }

export function initialRecovery (now: number, transferred = 0): RecoveryState {
  return { lastBytes: transferred, lastMoveAt: now, attempts: 0, nextAttemptAt: now }
}

/** Delay before resume attempt `attempt + 1`: 0.5 s, 1 s, 2 s, 4 s, then every 5 s. */
export function backoffMs (attempt: number): number {
  return Math.min(5_000, 500 * 2 ** Math.max(0, attempt - 1))
}

/** The action for one sample taken in postcopy, and the state to carry to the next one. */
export function decideRecovery (s: RecoveryState, x: RecoverySample, policy: RecoveryPolicy): { state: RecoveryState, action: RecoveryAction } {
  const moved = x.transferred > s.lastBytes
  const st: RecoveryState = moved ? { ...s, lastBytes: x.transferred, lastMoveAt: x.now } : { ...s }
  const stalled = x.now - st.lastMoveAt >= policy.stallMs
  if (x.status === 'postcopy-active') {
    if (st.brokenSince !== undefined && st.attempts > 0 && moved) {
      const action: RecoveryAction = { kind: 'resumed', brokenMs: x.now - st.brokenSince, attempts: st.attempts }
      return { state: initialRecovery(x.now, x.transferred), action }
    }
    if (!stalled) return { state: st, action: { kind: 'none' } }
    st.brokenSince ??= st.lastMoveAt
    if (x.now - st.brokenSince > policy.boundMs) return { state: st, action: { kind: 'give-up', brokenMs: x.now - st.brokenSince, attempts: st.attempts } }
    st.lastMoveAt = x.now
    return { state: st, action: { kind: 'pause', reason: `no byte sent for ${Math.round((x.now - s.lastMoveAt) / 1000)} s` } }
  }
  if (x.status !== 'postcopy-paused' && x.status !== 'postcopy-recover') return { state: st, action: { kind: 'none' } }
  st.brokenSince ??= x.now
  const brokenMs = x.now - st.brokenSince
  if (brokenMs > policy.boundMs) return { state: st, action: { kind: 'give-up', brokenMs, attempts: st.attempts } }
  if (x.status === 'postcopy-recover') {
    if (!stalled) return { state: st, action: { kind: 'none' } }
    st.lastMoveAt = x.now
    return { state: st, action: { kind: 'unstick', reason: `the new channel carried nothing for ${Math.round(policy.stallMs / 1000)} s` } }
  }
  if (x.now < st.nextAttemptAt) return { state: st, action: { kind: 'none' } }
  st.attempts++
  st.nextAttemptAt = x.now + backoffMs(st.attempts)
  st.lastMoveAt = x.now
  return { state: st, action: { kind: 'resume', attempt: st.attempts } }
}
