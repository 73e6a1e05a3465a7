/** `overdriver:` of a spec: the policy rules live in overdriver/decision/policy.ts. */
import type { HostSpec, Spec } from '../../../core/spec.ts'
import { parseOverdriverPolicy } from '../../../overdriver/decision/policy.ts'
import type { SpecPath } from '../locate.ts'
import type { Report } from '../raw.ts'

export function normalizeOverdriver (raw: unknown, hosts: Record<string, HostSpec>, report: Report): Spec['overdriver'] {
  const ctx = { hosts: Object.fromEntries(Object.values(hosts).map(h => [h.name, { memoryBytes: h.memoryBytes }])) }
  const { policy, issues } = parseOverdriverPolicy(raw, ctx)
  for (const i of issues) report(policyFieldPath(i.field), i.message)
  return policy
}

/** `overdriver.repositories.hosts.0` → ['overdriver', 'repositories', 'hosts', 0]. */
function policyFieldPath (field: string): SpecPath {
  return field.split('.').map(s => /^\d+$/.test(s) ? Number(s) : s)
}
