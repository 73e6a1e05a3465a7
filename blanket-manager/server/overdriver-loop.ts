/**
 * Overdriver under `supercloud serve`: configures each host agent's overload loop with the
 * spec's policy, subscribes to its events, and carries out the migrations it decides
 * (sustained overloads), one at a time. The agents' events reach the hub through this loop's
 * own subscription (shared with the stats poller when there is one), so `--interval 0` (no
 * poller) does not silence Overdriver; every few intervals the loop checks each agent
 * connection and subscribes again on a new one (agent restarted, connection dropped).
 */
import type { AgentClient } from '../agent/client.ts'
import type { Controller } from '../controller/index.ts'
import { ingestAgentEvents, type EventHub } from '../events/hub.ts'
import type { Spec } from '../../core/spec.ts'
import type { HostView } from '../../overdriver/decision/decide.ts'
import type { StatsPoller } from './poller.ts'
import { repeatWithoutOverlap } from '../../core/concurrency.ts'
import { refusedTargets } from '../migration/site-network.ts'

export interface OverdriverLoop {
  stop: () => void
}

export async function startOverdriverLoop (c: Controller, spec: Spec, hub: EventHub, poller: StatsPoller | undefined, log: (line: string) => void): Promise<OverdriverLoop | undefined> {
  const policy = spec.overdriver
  if (policy === undefined) return undefined
  const vms = c.store.vms()
  // The site-network rule: a VM with a NIC on its site network is not moved to another site.
  const refused = refusedTargets(spec, c.wires(spec), Object.fromEntries(vms.map(v => [v.name, v.host])))
  // Migration space per host: what its VMs' allocations leave free (the excess space manager's share).
  const hosts: HostView[] = Object.values(spec.hosts).map(h => ({
    ...(refused[h.name] !== undefined ? { refuses: refused[h.name] } : {}),
    name: h.name,
    migrationSpaceBytes: Math.max(0, h.memoryBytes - vms.filter(v => v.host === h.name).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0)),
    // Xen hosts run VMs with a swap disk but do not migrate them (planner/placement.ts xenMigrationUnsupported).
    ...(h.hypervisor.backend === 'xen' ? { noMigration: 'Xen host: a VM with a swap disk does not migrate between Xen hosts yet' } : {})
  }))
  const subscribed = new Map<string, AgentClient>()
  const attached = new WeakSet<AgentClient>()
  const attach = (agent: AgentClient): void => {
    if (poller !== undefined) { poller.attachAgent(agent); return }
    if (attached.has(agent)) return
    attached.add(agent)
    ingestAgentEvents(hub, agent, err => log(err.message))
  }
  /** Configures and subscribes every ready host's agent whose connection is new. */
  const subscribeAll = async (): Promise<void> => {
    for (const h of c.store.hosts().filter(x => x.status === 'ready')) {
      try {
        const agent = await c.agent(h.name)
        if (subscribed.get(h.name) === agent) continue
        attach(agent)
        await agent.overdriverConfigure({ host: h.name, policy, hosts })
        await agent.overdriverSubscribe()
        if (subscribed.has(h.name)) log(`overdriver: subscribed again to ${h.name}'s agent (new connection)`)
        subscribed.set(h.name, agent)
      } catch (err) {
        log(`overdriver: ${h.name}: ${(err as Error).message} (tried again later)`)
      }
    }
  }
  await subscribeAll()
  let stopped = false
  const resubscribe = repeatWithoutOverlap(subscribeAll, Math.max(5000, policy.intervalMs * 3))
  let queue = Promise.resolve()
  const busy = new Set<string>()
  const untap = hub.tap(ev => {
    if (ev.type !== 'overload.migration-decided' || ev.vm === undefined) return
    const vm = ev.vm
    const target = ev.data.target
    if (busy.has(vm)) return
    busy.add(vm)
    queue = queue.then(async () => {
      const from = c.store.vm(vm)?.host
      log(`overdriver: migrating ${vm} from ${from ?? '?'} to ${target} (${ev.data.reason})`)
      let ok = false
      let release: (() => void) | undefined
      try {
        // The VM's move lock, held through the move and the balloon after it (a `migrate` of it
        // from a terminal is refused meanwhile, and this move is refused while one runs).
        release = await c.lockVm(vm)
        await c.migrate(spec, vm, target, { mode: 'auto' })
        ok = true
        // On its new host the VM gets the memory it requested: the balloon deflates.
        const row = c.store.vm(vm)
        if (row?.record !== undefined) {
          await (await c.agent(target)).balloon(vm, row.record.memory.requestedBytes)
          c.store.putVm({ ...row, record: { ...row.record, memory: { ...row.record.memory, allocatedBytes: row.record.memory.requestedBytes } } })
          log(`overdriver: ${vm} now has its requested ${Math.round(row.record.memory.requestedBytes / 1048576)}M on ${target}`)
        }
      } catch (err) {
        log(`overdriver: migration of ${vm} failed: ${(err as Error).message}`)
      } finally {
        release?.()
      }
      // The source learns the migration it decided is over (or may be decided again); the
      // destination learns the VM arrived (its overload history starts afresh, after a grace period).
      const tell = async (host: string, done: boolean): Promise<void> => {
        try { await (await c.agent(host)).overdriverMigrated(vm, done) } catch (err) { log(`overdriver: could not tell ${host} about ${vm}: ${(err as Error).message}`) }
      }
      if (from !== undefined) await tell(from, ok)
      if (ok && target !== from) await tell(target, true)
      busy.delete(vm)
    })
  })
  log(`overdriver: watching ${c.store.hosts().length} host(s) every ${policy.intervalMs} ms`)
  return { stop: () => { stopped = true; resubscribe.stop(); untap() } }
}
