/**
 * Replacement capacity for an evacuation (pure): when no host has room for some VMs of a host
 * being evacuated, a new host is launched for them. Only `ec2` hosts are replaced (a cloud can
 * be asked for a machine; `local` and `ssh` hosts cannot). The candidates, in the order tried:
 *
 * 1. the spot pool of the source (`spot: { instanceTypes: [...] }`): each of its other instance
 *    types as a spot instance, at most at the pool's `maxPrice` (the source's own type is not
 *    tried again: its pool is what EC2 is reclaiming);
 * 2. on-demand (the fallback): the source's instance type, not interruptible.
 *
 * The replacement has the source's site, size and hypervisor, and a name of its own
 * (`<source>-r<N>`, the first free N), so it never takes the place of a host of the spec.
 */
import type { HostSpec } from '../../core/spec.ts'

export interface ReplacementCandidate {
  host: HostSpec
  /** What it is, for the progress line ("spot t3a.small", "on-demand t3.small"). */
  what: string
}

/** The first free `<source>-r<N>` name. */
export function replacementName (source: string, taken: ReadonlySet<string>): string {
  for (let n = 1; ; n++) if (!taken.has(`${source}-r${n}`)) return `${source}-r${n}`
}

/** The hosts to try, in order; empty when the source cannot be replaced (not an ec2 host). */
export function replacementCandidates (source: HostSpec, taken: ReadonlySet<string>): ReplacementCandidate[] {
  const o = source.ec2
  if (source.driver !== 'ec2' || o === undefined) return []
  const name = replacementName(source.name, taken)
  const { spot: _spot, spotPool: _pool, ...base } = o
  const out: ReplacementCandidate[] = []
  for (const it of o.spotPool?.instanceTypes ?? []) {
    const pool = o.spotPool?.maxPrice !== undefined ? { maxPrice: o.spotPool.maxPrice, instanceTypes: [] } : undefined
    out.push({ host: { ...source, name, ec2: { ...base, instanceType: it, spot: true, ...(pool !== undefined ? { spotPool: pool } : {}) } }, what: `spot ${it}${pool !== undefined ? ` at most $${pool.maxPrice}/h` : ''}` })
  }
  out.push({ host: { ...source, name, ec2: { ...base } }, what: `on-demand ${o.instanceType}` })
  return out
}
