/**
 * The serve-mode poller: every few seconds it takes the supercloud's status (which reaches
 * every host's agent over SSH), asks each agent for the memory figures of its running guests
 * (`vm.stats`) and publishes them as `vm.stats` events. It also attaches to every agent
 * connection's pushes (`AgentClient.onEvent`), so events an agent sends over its SSH channel
 * are validated and published (ingestAgentEvents), and it reports agents going down or
 * coming back (`agent.down` / `agent.up`).
 */
import type { AgentClient } from '../agent/client.ts'
import type { StatusReport } from '../controller/index.ts'
import { hostConcurrency } from '../controller/types.ts'
import { groupBy, mapLimited } from '../../core/concurrency.ts'
import { ingestAgentEvents, type EventHub, type EventRejectedError } from '../events/hub.ts'
import type { EventInput } from '../events/schema.ts'

/** What the poller needs of the controller. */
export interface PollTarget {
  status: () => Promise<StatusReport>
  agent: (host: string) => Promise<AgentClient>
}

export interface PollerOptions {
  intervalMs?: number
  onError?: (err: Error) => void
  onRejected?: (err: EventRejectedError) => void
  /** Hosts polled at once; default SUPERCLOUD_HOST_CONCURRENCY, else 16 (docs/scale.md). */
  hostConcurrency?: number
}

export const DEFAULT_POLL_MS = 5000

export class StatsPoller {
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private stopped = false
  private lastStatus?: StatusReport
  private readonly attached = new WeakSet<AgentClient>()
  private readonly agentState = new Map<string, 'up' | 'down'>()
  readonly intervalMs: number

  constructor (private readonly target: PollTarget, private readonly hub: EventHub, private readonly opts: PollerOptions = {}) {
    this.intervalMs = opts.intervalMs ?? DEFAULT_POLL_MS
  }

  get status (): StatusReport | undefined { return this.lastStatus }

  /** Ingests an agent's pushes (once per client); callers that subscribe agents to events attach them first. */
  attachAgent (agent: AgentClient): void {
    if (this.attached.has(agent)) return
    this.attached.add(agent)
    ingestAgentEvents(this.hub, agent, this.opts.onRejected)
  }

  start (): void {
    if (this.timer !== undefined) return
    const tick = (): void => {
      if (this.stopped) return
      this.running = this.pollOnce().catch(err => this.opts.onError?.(err as Error)).finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.intervalMs)
      })
    }
    this.timer = setTimeout(tick, 0)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    await this.running?.catch(() => {})
  }

  private agentIs (host: string, state: 'up' | 'down', reason = ''): void {
    if (this.agentState.get(host) === state) return
    const before = this.agentState.get(host)
    this.agentState.set(host, state)
    if (state === 'up') this.hub.publish({ type: 'agent.up', host, data: {} })
    else if (before === 'up') this.hub.publish({ type: 'agent.down', host, data: { reason } })
  }

  /** One round: status, agents' pushes attached, stats of every running guest published. */
  async pollOnce (): Promise<void> {
    const status = await this.target.status()
    this.lastStatus = status
    const events: EventInput[] = []
    const running = new Map(groupBy(status.vms.filter(vm => vm.state === 'running'), vm => vm.host))
    await mapLimited(status.hosts, this.opts.hostConcurrency ?? hostConcurrency(), async h => {
      if (h.status !== 'ready') return
      if (h.health !== 'running') { this.agentIs(h.name, 'down', `host ${h.health}`); return }
      let agent: AgentClient
      try {
        agent = await this.target.agent(h.name)
      } catch (err) {
        this.agentIs(h.name, 'down', (err as Error).message)
        return
      }
      this.agentIs(h.name, 'up')
      this.attachAgent(agent)
      for (const vm of running.get(h.name) ?? []) {
        try {
          const s = await agent.vmStats(vm.name)
          const data: Extract<EventInput, { type: 'vm.stats' }>['data'] = { balloonBytes: s.balloonActualBytes, residentBytes: s.residentBytes }
          if (vm.memory !== undefined) { data.requestedBytes = vm.memory.requestedBytes; data.allocatedBytes = vm.memory.allocatedBytes }
          events.push({ type: 'vm.stats', host: h.name, vm: vm.name, data })
        } catch (err) {
          this.opts.onError?.(err as Error)
        }
      }
    })
    if (events.length > 0 && !this.stopped) this.hub.publishMany(events)
  }
}
