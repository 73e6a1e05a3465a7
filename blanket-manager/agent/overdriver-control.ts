/**
 * Overdriver in the agent protocol, the controller's side (pure, no NBD server or page
 * repository): brokering a VM's swap launch (page repositories on other hosts and capabilities
 * for the VM) and the overload.* events the agent pushes (decide()'s events in the event
 * schema's shape). The agent's side is ./overdriver-host.ts.
 */
import type { ControllerPolicy } from '../../overdriver/decision/decide.ts'
import type { OverdriverEvent } from '../../overdriver/decision/events.ts'
import type { IssueParams, RepositoryGrantJson, RepositoryParams, SwapLaunch } from './protocol.ts'

/** Where a host's page repository listens unless told otherwise. */
export const REPOSITORY_PORT = 7709

/** An overload.* event as the agent pushes it (the controller adds host and ts). A type, not an interface: it is a JSON record. */
export type SchemaEventJson = {
  type: string
  vm: string
  data: Record<string, unknown>
}

/**
 * decide()'s event → the schema's overload.* event (without host: the controller pins the
 * agent's host). migration.decided names the VM to move in `vm`; migration.blocked has no
 * schema type and is not pushed.
 */
export function toSchemaEvent (e: OverdriverEvent, policy: ControllerPolicy, lastRate?: number): SchemaEventJson | undefined {
  const rate = lastRate !== undefined ? { pagingRate: Math.round(lastRate) } : {}
  switch (e.type) {
    case 'overload.started': return { type: 'overload.started', vm: e.vm, data: { pagingRate: Math.round(e.opsPerSec), threshold: policy.overloadOpsPerSec } }
    case 'overload.classified': return { type: 'overload.classified', vm: e.vm, data: { classification: e.class, ...rate } }
    case 'coopswap.on': return { type: 'overload.swap', vm: e.vm, data: { enabled: true, reason: e.reason } }
    case 'coopswap.off': return { type: 'overload.swap', vm: e.vm, data: { enabled: false, reason: e.reason } }
    case 'coopswap.unavailable': return { type: 'overload.swap', vm: e.vm, data: { enabled: false, reason: e.reason } }
    case 'threshold.changed': return { type: 'overload.threshold', vm: e.vm, data: { threshold: e.toMs, previous: e.fromMs } }
    case 'migration.decided': return { type: 'overload.migration-decided', vm: e.move, data: { target: e.target, reason: `${e.reason} (relieves ${e.relieves}; ${e.bytes} bytes to copy)` } }
    case 'overload.ended': return { type: 'overload.ended', vm: e.vm, data: { durationMs: e.durationMs } }
    case 'migration.blocked': return undefined
    case 'migration.expired': return undefined
  }
}

/** What the controller needs to broker a VM's swap launch (blanket-manager/controller.ts buildLaunch). */
export interface SwapBroker {
  agent: (host: string) => Promise<{ overdriverRepository: (p: RepositoryParams) => Promise<{ host: string, port: number }>, overdriverIssue: (p: IssueParams) => Promise<RepositoryGrantJson> }>
  /** The host's site address (its HostRecord.address). */
  address: (host: string) => string | undefined
}

/**
 * The VM's `swap` launch field, brokered by the controller: for every repository host of the
 * policy other than the VM's own, make sure its agent runs a repository (on its site address,
 * port 7709, with the policy's memory) and ask it for a capability for the VM. Undefined when
 * the VM has no `swap:`. A repository host that cannot be reached is skipped (the VM then swaps
 * to its local disk only).
 */
export async function brokerSwapLaunch (spec: { overdriver?: { repositories: { hosts: string[], memoryBytes: Record<string, number> } } }, vm: { name: string, swapBytes?: number }, host: string, broker: SwapBroker): Promise<SwapLaunch | undefined> {
  if (vm.swapBytes === undefined) return undefined
  const repositories: RepositoryGrantJson[] = []
  for (const h of spec.overdriver?.repositories.hosts ?? []) {
    const capacityBytes = spec.overdriver?.repositories.memoryBytes[h]
    const address = broker.address(h)
    if (h === host || capacityBytes === undefined || address === undefined) continue
    try {
      const agent = await broker.agent(h)
      await agent.overdriverRepository({ host: address, port: REPOSITORY_PORT, capacityBytes })
      repositories.push(await agent.overdriverIssue({ vm: vm.name }))
    } catch { /* unreachable repository host: local swap only */ }
  }
  return { sizeBytes: vm.swapBytes, repositories }
}
