/**
 * Spot interruptions under `supercloud serve`: asks the agent of every ready ec2 host for its
 * interruption notices (`host.watch`: the agent polls the instance metadata, agent/
 * interruption-watch.ts), so `host.interruption` and `host.rebalance` reach the event stream,
 * and answers a `host.interruption` by evacuating the host before its deadline (evacuation/
 * evacuate.ts) as an `evacuate` operation: its plan, each move and the VMs that will not make
 * it are its progress in the event stream. Hosts with a notice are not targets of other
 * evacuations. Every few seconds it looks for ec2 hosts whose agent connection is new.
 */
import type { AgentClient } from '../agent/client.ts'
import type { Controller } from '../controller/index.ts'
import type { EventHub } from '../events/hub.ts'
import { runOperation } from '../operations/operation.ts'
import { evacuateHost } from '../evacuation/evacuate.ts'
import type { Spec } from '../../core/spec.ts'
import type { StatsPoller } from './poller.ts'
import { repeatWithoutOverlap } from '../../core/concurrency.ts'

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

  const noticed = new Map<string, string>()
  const running = new Map<string, Promise<void>>()
  const untap = hub.tap(ev => {
    if (stopped) return
    if (ev.type === 'host.rebalance') { log(`interruptions: ${ev.host} has a rebalance recommendation (${ev.data.noticeTime})`); return }
    if (ev.type !== 'host.interruption') return
    const host = ev.host
    if (noticed.get(host) === ev.data.deadline) return
    noticed.set(host, ev.data.deadline)
    if (running.has(host)) { log(`interruptions: ${host}: a new notice (${ev.data.deadline}) while its evacuation runs`); return }
    const deadline = Date.parse(ev.data.deadline)
    log(`interruptions: ${host} will be reclaimed (${ev.data.action}) at ${ev.data.deadline}: evacuating it`)
    const work = runOperation({ store: c.store, publish: e => { hub.publish(e) }, who: `serve (${host} interrupted)` }, { kind: 'evacuate', subject: host }, async op =>
      await evacuateHost(c, spec, host, { deadline, avoid: new Set(noticed.keys()), signal: op.signal, onProgress: op.onProgress }))
      .then(r => { log(`interruptions: ${host} evacuated: ${r.moved.map(m => `${m.vm} -> ${m.to}`).join(', ') || 'nothing to move'}`) })
      .catch(err => { log(`interruptions: ${(err as Error).message}`) })
      .finally(() => { running.delete(host) })
    running.set(host, work)
  })
  log(`interruptions: watching ${ec2().length} ec2 host(s)`)
  return { running, stop: () => { stopped = true; rewatch.stop(); untap() } }
}
