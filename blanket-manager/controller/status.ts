/** `supercloud status`: the state's hosts and VMs with what the hosts say about them. */
import type { Observation } from '../planner/plan.ts'
import type { StateStore } from '../state/store.ts'
import type { HostStatus, StatusReport, VmStatus } from './types.ts'

/** The report for supercloud `name` from its state and an observation of its hosts. */
export function statusReport (name: string, store: StateStore, obs: Observation, prefix: string | undefined): StatusReport {
  const hosts: HostStatus[] = store.hosts().map(h => {
    const s: HostStatus = { name: h.name, site: h.site, driver: h.driver, status: h.status, health: obs.hosts[h.name] ?? 'unknown' }
    if (h.record !== undefined) s.address = h.record.address
    if (h.accel !== undefined) s.accel = h.accel
    if (h.accelReason !== undefined) s.accelReason = h.accelReason
    return s
  })
  const vms: VmStatus[] = store.vms().map(v => {
    const s: VmStatus = {
      name: v.name,
      host: v.host,
      status: v.status,
      state: (obs.vms[v.name] ?? 'unknown') as VmStatus['state'],
      addresses: v.record?.nics.map(n => n.address) ?? []
    }
    if (v.record !== undefined) { s.memory = v.record.memory; s.cpus = v.record.cpus }
    const h = store.host(v.host)
    if (h?.accel !== undefined) s.accel = h.accel
    if (v.error !== undefined) s.error = v.error
    return s
  })
  const r: StatusReport = { name, stateFile: store.path, hosts, vms }
  if (prefix !== undefined) r.prefix = prefix
  return r
}
