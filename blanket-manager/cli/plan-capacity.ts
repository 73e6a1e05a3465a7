/**
 * `supercloud plan`'s Overdriver section (pure): the seed's binomial bound for the spec's
 * oversubscribed VMs under its `overdriver:` policy — how many simultaneous sustained overloads
 * (migrations: room for a whole VM each) and transient ones (repository memory: requested −
 * allocated each) to provision for, with the policy's confidence — and whether the spec's
 * hosts and repository memory cover it.
 *
 * The overload probability and the sustained share are not in the spec; the seed's measured
 * figures are used (p = 0.16, 4% of overloads long enough for migration) unless given.
 */
import { capacityPlan } from '../../overdriver/decision/capacity.ts'
import { formatBytes } from '../../core/units.ts'
import type { Spec } from '../../core/spec.ts'

export const DEFAULT_P_OVERLOAD = 0.16
export const DEFAULT_SUSTAINED_SHARE = 0.04

/** Lines describing the capacity plan; empty when the spec has no `overdriver:` section. */
export function capacityPlanLines (spec: Spec, profile: { pOverload?: number, sustainedShare?: number } = {}): string[] {
  const policy = spec.overdriver
  if (policy === undefined) return []
  const vms = Object.values(spec.vms).filter(v => v.memory.allocatedBytes < v.memory.requestedBytes)
  const pOverload = profile.pOverload ?? DEFAULT_P_OVERLOAD
  const sustainedShare = profile.sustainedShare ?? DEFAULT_SUSTAINED_SHARE
  const out = [`overdriver capacity (confidence ${policy.confidence}, p(overload) ${pOverload}, ${Math.round(sustainedShare * 100)}% sustained):`]
  if (vms.length === 0) {
    out.push('  no VM is oversubscribed (allocated < requested): nothing to provision')
    return out
  }
  // The biggest VM bounds every slot: a plan that holds for it holds for the others.
  const requestedBytes = Math.max(...vms.map(v => v.memory.requestedBytes))
  const shortfall = Math.max(...vms.map(v => v.memory.requestedBytes - v.memory.allocatedBytes))
  const plan = capacityPlan({ vms: vms.length, requestedBytes, allocatedBytes: requestedBytes - shortfall, pOverload, sustainedShare, confidence: policy.confidence })
  out.push(`  ${vms.length} oversubscribed VM${vms.length === 1 ? '' : 's'}: at most ${plan.sustained} sustained overload${plan.sustained === 1 ? '' : 's'} (P = ${plan.pSustainedBound.toFixed(3)}) and ${plan.transient} transient (P = ${plan.pTransientBound.toFixed(3)}) at once`)
  out.push(`  migration space: ${formatBytes(plan.migrationBytes)} (${plan.sustained} × ${formatBytes(requestedBytes)}, one VM per target host)`)
  const repoHave = Object.values(policy.repositories.memoryBytes).reduce((a, b) => a + b, 0)
  out.push(`  repository memory: ${formatBytes(plan.repositoryBytes)} needed (${plan.transient} × ${formatBytes(shortfall)}), ${formatBytes(repoHave)} given (${policy.repositories.hosts.join(', ') || 'no repository hosts'})${repoHave < plan.repositoryBytes ? ' — NOT ENOUGH' : ''}`)
  // Free memory per host after its placed VMs' allocations: a migration slot needs one host with a whole VM's room.
  const used: Record<string, number> = {}
  for (const v of Object.values(spec.vms)) if (v.host !== undefined) used[v.host] = (used[v.host] ?? 0) + v.memory.allocatedBytes
  const slots = Object.values(spec.hosts).reduce((a, h) => a + Math.floor(Math.max(0, h.memoryBytes - (used[h.name] ?? 0) - (policy.repositories.memoryBytes[h.name] ?? 0)) / requestedBytes), 0)
  out.push(`  migration slots free on the hosts: ${slots}${slots < plan.sustained ? ` — NOT ENOUGH for ${plan.sustained}` : ''}`)
  return out
}

/** The same as text (for `supercloud plan`), '' when the spec has no `overdriver:` section. */
export function formatCapacityPlan (spec: Spec, profile: { pOverload?: number, sustainedShare?: number } = {}): string {
  const lines = capacityPlanLines(spec, profile)
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}
