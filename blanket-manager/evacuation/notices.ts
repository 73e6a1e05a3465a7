/**
 * What `serve` does with a host's notices (pure: no I/O, no clock). EC2 sends a rebalance
 * recommendation when a spot instance is at elevated risk, often minutes before an
 * interruption notice and never after one; the interruption notice gives the termination time.
 *
 * - A rebalance recommendation starts the evacuation early and without hurry: no deadline, so
 *   every VM moves by pre-copy (no post-copy risk: the source keeps the VM until the switchover),
 *   one at a time, planned against an hour.
 * - An interruption notice starts the evacuation against its deadline; when an unhurried one
 *   already runs for the host, that one is hurried instead (the moves after the one in flight
 *   are planned against the deadline, in the deadline's modes): the VMs already moved stay moved.
 * - The same notice twice (a new agent connection replays it) does nothing; a later rebalance
 *   recommendation while an evacuation runs, or after an interruption notice, does nothing.
 * - A new interruption time while a hurried evacuation runs moves its deadline (EC2 states one
 *   time per notice; a second notice replaces it).
 */

export type HostNotice =
  | { kind: 'rebalance', noticeTime: string }
  | { kind: 'interruption', deadline: string }

/** What serve knows of one host's notices and evacuation. */
export interface HostNoticeState {
  /** The last rebalance recommendation acted on (its noticeTime). */
  rebalance?: string
  /** The last interruption deadline acted on (ISO). */
  deadline?: string
  /** An evacuation of the host runs: undefined deadline = unhurried. */
  running?: { deadline?: number }
}

export type NoticeAction =
  /** Start an evacuation: with a deadline (epoch ms), or unhurried (none). */
  | { act: 'start', deadline?: number, reason: string }
  /** Give the running evacuation this deadline (epoch ms). */
  | { act: 'hurry', deadline: number, reason: string }
  | { act: 'ignore', reason: string }

export function decideOnNotice (host: string, state: HostNoticeState, notice: HostNotice): NoticeAction {
  if (notice.kind === 'rebalance') {
    if (state.rebalance === notice.noticeTime) return { act: 'ignore', reason: `${host}: the same rebalance recommendation (${notice.noticeTime}) again` }
    if (state.deadline !== undefined) return { act: 'ignore', reason: `${host}: a rebalance recommendation after its interruption notice (${state.deadline}) changes nothing` }
    if (state.running !== undefined) return { act: 'ignore', reason: `${host}: a rebalance recommendation while its evacuation runs` }
    return { act: 'start', reason: `${host} has a rebalance recommendation (${notice.noticeTime}): moving its VMs off early, by pre-copy, one at a time` }
  }
  const deadline = Date.parse(notice.deadline)
  if (Number.isNaN(deadline)) return { act: 'ignore', reason: `${host}: an interruption notice with no valid time (${notice.deadline})` }
  if (state.deadline !== undefined && Date.parse(state.deadline) === deadline) return { act: 'ignore', reason: `${host}: the same interruption notice (${notice.deadline}) again` }
  if (state.running === undefined) return { act: 'start', deadline, reason: `${host} will be reclaimed at ${notice.deadline}: evacuating it` }
  if (state.running.deadline === undefined) return { act: 'hurry', deadline, reason: `${host} will be reclaimed at ${notice.deadline}: its unhurried evacuation (rebalance) now plans against that deadline` }
  return { act: 'hurry', deadline, reason: `${host}: a new interruption time ${notice.deadline} while its evacuation runs: planned against it from the next move` }
}

/** The state after `action` was taken on `notice`. */
export function afterNotice (state: HostNoticeState, notice: HostNotice, action: NoticeAction): HostNoticeState {
  const next: HostNoticeState = { ...state }
  if (notice.kind === 'rebalance' && action.act !== 'ignore') next.rebalance = notice.noticeTime
  if (notice.kind === 'rebalance' && action.act === 'ignore' && state.running !== undefined) next.rebalance = notice.noticeTime
  if (notice.kind === 'interruption' && action.act !== 'ignore') next.deadline = new Date(Date.parse(notice.deadline)).toISOString()
  if (action.act === 'start') next.running = action.deadline !== undefined ? { deadline: action.deadline } : {}
  if (action.act === 'hurry') next.running = { deadline: action.deadline }
  return next
}
