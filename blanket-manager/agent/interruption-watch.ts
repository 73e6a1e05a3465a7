/**
 * The host agent's interruption watch (ec2 hosts): every few seconds (5 s by default) it asks
 * the instance metadata service (drivers/ec2/imds.ts) for a spot interruption notice and a
 * rebalance recommendation, and pushes `host.interruption` (with the termination time) and
 * `host.rebalance` to every connection that asked for them (`host.watch`). A notice is pushed
 * once per subscriber: when it appears, or at once to a subscriber that comes later (a
 * controller that connects after the notice still learns of it).
 */
import type { InstanceAction, RebalanceRecommendation } from '../../drivers/ec2/imds.ts'

/** What the watch reads (ImdsClient has these). */
export interface InterruptionSource {
  instanceAction: () => Promise<InstanceAction | undefined>
  rebalance: () => Promise<RebalanceRecommendation | undefined>
}

export const DEFAULT_IMDS_INTERVAL_MS = 5000

type Push = (event: Record<string, unknown>) => void
interface Subscriber { host: string, push: Push, sent: Set<string> }

export class InterruptionWatch {
  private timer?: NodeJS.Timeout
  private stopped = false
  private action?: InstanceAction
  private actionSeenAt?: number
  private recommendation?: RebalanceRecommendation
  private readonly subscribers = new Set<Subscriber>()
  /** The last error of a poll (the watch goes on). */
  lastError?: string

  constructor (private readonly source: InterruptionSource, private readonly opts: { intervalMs?: number, log?: (line: string) => void, now?: () => number } = {}) {}

  /** `push` receives this host's notices (as `host`) until the returned function is called. */
  subscribe (host: string, push: Push): () => void {
    const sub: Subscriber = { host, push, sent: new Set() }
    this.subscribers.add(sub)
    this.deliver(sub)
    return () => { this.subscribers.delete(sub) }
  }

  start (): void {
    if (this.timer !== undefined || this.stopped) return
    const tick = (): void => {
      void this.pollOnce().finally(() => {
        if (!this.stopped) { this.timer = setTimeout(tick, this.opts.intervalMs ?? DEFAULT_IMDS_INTERVAL_MS); this.timer.unref() }
      })
    }
    this.timer = setTimeout(tick, 0)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
  }

  /** One look at the metadata; new notices go to the subscribers. */
  async pollOnce (): Promise<void> {
    try {
      const [action, rebalance] = await Promise.all([this.source.instanceAction(), this.source.rebalance()])
      if (action !== undefined && action.time !== this.action?.time) { this.action = action; this.actionSeenAt = (this.opts.now ?? Date.now)() }
      if (rebalance !== undefined && rebalance.noticeTime !== this.recommendation?.noticeTime) this.recommendation = rebalance
      delete this.lastError
    } catch (err) {
      const msg = (err as Error).message
      if (msg !== this.lastError) this.opts.log?.(`interruption watch: ${msg}`)
      this.lastError = msg
    }
    for (const s of this.subscribers) this.deliver(s)
  }

  private deliver (s: Subscriber): void {
    const r = this.recommendation
    if (r !== undefined && !s.sent.has(`r:${r.noticeTime}`)) {
      s.sent.add(`r:${r.noticeTime}`)
      s.push({ type: 'host.rebalance', host: s.host, data: { noticeTime: r.noticeTime } })
    }
    const a = this.action
    if (a !== undefined && !s.sent.has(`a:${a.time}`)) {
      s.sent.add(`a:${a.time}`)
      const noticeSeconds = Math.max(0, Math.round((Date.parse(a.time) - (this.actionSeenAt ?? Date.now())) / 1000))
      s.push({ type: 'host.interruption', host: s.host, data: { deadline: a.time, action: a.action, noticeSeconds } })
    }
  }
}
