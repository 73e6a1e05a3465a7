/**
 * The extender rule for a move: a wired VM may change sites only when every wire it would then
 * carry across sites has an extender in both (VirtualWire's encrypted tunnel); a VXLAN connector
 * across sites without them crosses the networks between clouds in clear. Pure.
 */
import type { Spec, WireSpec } from '../../core/spec.ts'
import { SupercloudError } from '../../core/errors.ts'
import { crossSiteCheck } from '../../virtualwire/topology/compile.ts'

/** A migration refused by the extender rule, before anything moved. */
export class CrossSiteMigrationError extends SupercloudError {
  constructor (readonly vm: string, readonly to: string, readonly problems: string[]) {
    super('SC_MIGRATE_CROSS_SITE', `${vm} cannot move to ${to}: its wires would cross sites in clear (nothing was moved):\n` +
      problems.map(p => `  ${p}`).join('\n') + '\nAdd an extender in both sites (network.extenders) or pick a host in the site of its peers.', { exitCode: 2 })
  }
}

/**
 * The problems of the wires touching `vm` once it runs on `to` (the other VMs where `placement`
 * has them): one `network.wires[i]: ...` line each, none when the move keeps the rule.
 */
export function crossSiteMoveProblems (spec: Pick<Spec, 'vms' | 'hosts' | 'network'>, wires: WireSpec[], placement: Record<string, string>, vm: string, to: string): string[] {
  const moved = { ...placement, [vm]: to }
  return crossSiteCheck({ ...spec, network: { ...spec.network, wires } }, moved)
    .filter(p => { const w = wires[p.index]; return w !== undefined && (w.a.component === vm || w.b.component === vm) })
    .map(p => `${p.field}: ${p.message}`)
}
