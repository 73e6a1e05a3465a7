/**
 * Overdriver under `supercloud serve`: configures each host agent's overload loop with the
 * spec's policy, subscribes to its events, and carries out the migrations it decides
 * (sustained overloads), one at a time.
 */
import type { Controller } from '../controller.ts'
import type { EventHub } from '../events/hub.ts'
import type { Spec } from '../spec/types.ts'
import type { StatsPoller } from './poller.ts'

export interface OverdriverLoop {
  stop: () => void
}

export async function startOverdriverLoop (c: Controller, spec: Spec, hub: EventHub, poller: StatsPoller | undefined, log: (line: string) => void): Promise<OverdriverLoop | undefined> {
  const policy = spec.overdriver
  if (policy === undefined) return undefined
  const vms = c.store.vms()
  // Migration space per host: what its VMs' allocations leave free (the excess space manager's share).
  const hosts = Object.values(spec.hosts).map(h => ({
    name: h.name,
    migrationSpaceBytes: Math.max(0, h.memoryBytes - vms.filter(v => v.host === h.name).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0))
  }))
  for (const h of c.store.hosts().filter(x => x.status === 'ready')) {
    const agent = await c.agent(h.name)
    poller?.attachAgent(agent)
    await agent.overdriverConfigure({ host: h.name, policy, hosts })
    await agent.overdriverSubscribe()
  }
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
      try {
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
      }
      if (from !== undefined) await (await c.agent(from)).overdriverMigrated(vm, ok).catch(() => {})
      busy.delete(vm)
    })
  })
  log(`overdriver: watching ${c.store.hosts().length} host(s) every ${policy.intervalMs} ms`)
  return { stop: () => { untap() } }
}
