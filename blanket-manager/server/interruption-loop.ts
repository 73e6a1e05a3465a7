/**
 * Spot interruptions under `supercloud serve`: asks the agent of every ready ec2 host for its
 * interruption notices (`host.watch`: the agent polls the instance metadata, agent/
 * interruption-watch.ts), so `host.interruption` and `host.rebalance` reach the event stream,
 * and answers a `host.interruption` by evacuating the host before its deadline (evacuation/
 * evacuate.ts) as an `evacuate` operation: its plan, each move and the VMs that will not make
 * it are its progress in the event stream. A `host.rebalance` starts the same evacuation
 * earlier and unhurried (pre-copy, one at a time), which a later interruption notice hurries
 * (evacuation/notices.ts decides). Hosts with a notice are not targets of other evacuations. Every few seconds it looks for ec2 hosts whose agent connection is new.
 */
import type { AgentClient } from '../agent/client.ts'
import type { Controller } from '../controller/index.ts'
import type { EventHub } from '../events/hub.ts'
import { runOperation } from '../operations/operation.ts'
import { evacuateHost, type EvacuationUrgency } from '../evacuation/evacuate.ts'
import { afterNotice, decideOnNotice, type HostNotice, type HostNoticeState } from '../evacuation/notices.ts'
import type { Spec } from '../../core/spec.ts'
import type { StatsPoller } from './poller.ts'
import { repeatWithoutOverlap } from '../../core/concurrency.ts'
import { watchReclaim } from './reclaim-watch.ts'

/** One reclaim watch per host (the latest deadline), all stopped with the loop. */
function reclaimWatcher (c: Controller, log: (line: string) => void): { watch: (host: string, deadline: number) => void, stop: () => void } {
  const stop = new AbortController()
  const watching = new Map<string, AbortController>()
  return {
    watch: (host, deadline) => {
      watching.get(host)?.abort()
      const one = new AbortController()
      stop.signal.addEventListener('abort', () => { one.abort() }, { once: true })
      watching.set(host, one)
      void watchReclaim({ hostHealth: async h => await c.hostHealth(h), forgetHost: (h, why) => c.forgetHost(h, why) }, host, deadline, one.signal, log)
        .catch(err => { log(`interruptions: ${host}: ${(err as Error).message}`) })
        .finally(() => { if (watching.get(host) === one) watching.delete(host) })
    },
    stop: () => { stop.abort() }
  }
}

export interface InterruptionLoop {
  stop: () => void
  /** Evacuations started, and still running (tests wait on them). */
  readonly running: Map<string, Promise<void>>
}

export const WATCH_CHECK_MS = 5000

function ingestNotices (hub: EventHub, agent: AgentClient, log: (line: string) => void): void {
  agent.onEvent(raw => {
    if (raw.type !== 'host.interruption' && raw.type !== 'host.rebalance') return
    try { hub.ingest(raw, `agent on ${agent.host}`, { host: agent.host }) } catch (err) { log((err as Error).message) }
  })
}

export async function startInterruptionLoop (c: Controller, spec: Spec, hub: EventHub, poller: StatsPoller | undefined, log: (line: string) => void): Promise<InterruptionLoop | undefined> {
  const ec2 = (): string[] => c.store.hosts().filter(h => h.status === 'ready' && h.driver === 'ec2' && spec.hosts[h.name] !== undefined).map(h => h.name)
  if (!Object.values(spec.hosts).some(h => h.driver === 'ec2')) return undefined
  const watched = new Map<string, AgentClient>()
  const attached = new WeakSet<AgentClient>()
  const watchAll = async (): Promise<void> => {
    for (const name of ec2()) {
      try {
        const agent = await c.agent(name)
        if (watched.get(name) === agent) continue
        // The poller ingests all of a connection's pushes; without it, only the notices (this
        // connection's migration pushes are the controller's, not the event stream's).
        if (poller !== undefined) poller.attachAgent(agent)
        else if (!attached.has(agent)) { attached.add(agent); ingestNotices(hub, agent, log) }
        if (!await agent.hostWatch(name)) log(`interruptions: ${name}'s agent does not watch the instance metadata (started without --imds)`)
        watched.set(name, agent)
      } catch (err) {
        log(`interruptions: ${name}: ${(err as Error).message} (tried again later)`)
      }
    }
  }
  await watchAll()
  let stopped = false
  const rewatch = repeatWithoutOverlap(watchAll, WATCH_CHECK_MS)

  // Per host: the notices acted on and its evacuation (evacuation/notices.ts decides).
  const notices = new Map<string, HostNoticeState>()
  const urgency = new Map<string, EvacuationUrgency>()
  const running = new Map<string, Promise<void>>()
  const reclaims = reclaimWatcher(c, log)
  const untap = hub.tap(ev => {
    if (stopped) return
    if (ev.type !== 'host.rebalance' && ev.type !== 'host.interruption') return
    const host = ev.host
    const notice: HostNotice = ev.type === 'host.rebalance' ? { kind: 'rebalance', noticeTime: ev.data.noticeTime } : { kind: 'interruption', deadline: ev.data.deadline }
    const state = notices.get(host) ?? {}
    const action = decideOnNotice(host, state, notice)
    notices.set(host, afterNotice(state, notice, action))
    if (action.act === 'ignore') { log(`interruptions: ${action.reason}`); return }
    if (ev.type === 'host.interruption') reclaims.watch(host, action.deadline ?? Date.parse(ev.data.deadline))
    if (ev.type === 'host.interruption') log(`interruptions: ${host} will be reclaimed (${ev.data.action}) at ${ev.data.deadline}: ${action.act === 'hurry' ? 'hurrying its evacuation' : 'evacuating it'}`)
    else log(`interruptions: ${action.reason}`)
    if (action.act === 'hurry') { const u = urgency.get(host); if (u !== undefined) u.deadline = action.deadline; return }
    const u: EvacuationUrgency = action.deadline !== undefined ? { deadline: action.deadline } : {}
    urgency.set(host, u)
    const why = ev.type === 'host.interruption' ? 'interrupted' : 'rebalance recommendation'
    // Hosts with a notice of either kind are at risk: not targets.
    const work = runOperation({ store: c.store, publish: e => { hub.publish(e) }, who: `serve (${host} ${why})` }, { kind: 'evacuate', subject: host }, async op =>
      await evacuateHost(c, spec, host, { urgency: u, avoid: { has: h => notices.has(h) }, signal: op.signal, onProgress: op.onProgress }))
      .then(r => { log(`interruptions: ${host} evacuated: ${r.moved.map(m => `${m.vm} -> ${m.to}`).join(', ') || 'nothing to move'}`) })
      .catch(err => { log(`interruptions: ${(err as Error).message}`) })
      .finally(() => {
        running.delete(host)
        urgency.delete(host)
        const st = notices.get(host)
        if (st !== undefined) { const { running: _, ...rest } = st; notices.set(host, rest) }
      })
    running.set(host, work)
  })
  log(`interruptions: watching ${ec2().length} ec2 host(s)`)
  return { running, stop: () => { stopped = true; rewatch.stop(); untap(); reclaims.stop() } }
}
