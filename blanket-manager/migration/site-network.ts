/**
 * The site-network rule for a move: a VM NIC that is not on a VirtualWire wire is bridged onto
 * its host's site network (the site's L2: its subnet, its gateway). A live migration keeps the
 * guest's address, so a VM with such a NIC may move only to a host of the same site: on
 * another site its address is on nobody's network and its peers lose it (issue 18 item 6). The
 * site's L2 is not extended across sites; a NIC on a VirtualWire wire moves with its wire (its
 * endpoint follows the VM, through the extenders across sites). Pure.
 */
import type { Spec, WireSpec } from '../../core/spec.ts'
import { SupercloudError } from '../../core/errors.ts'
import { wiredNics } from '../../virtualwire/topology/wires.ts'

/** A NIC of the moved VM that would be cut off its site network by the move. */
export interface StrandedNic {
  vm: string
  nic: string
  /** Its address with prefix when known (the state's record, else the spec). */
  address?: string
  /** The site whose network the NIC is on (its current host's). */
  site: string
  /** That site's subnet, when the spec gives one. */
  subnet?: string
  to: string
  /** The destination's site. */
  toSite: string
}

/** What the rule needs: the spec's sites, hosts and VMs, and the wires in force. */
export type SiteNetworkSpec = Pick<Spec, 'sites' | 'hosts' | 'vms'>

/**
 * The NICs of `vm` (now on `from`) that are on `from`'s site network while `to` is in another
 * site; empty when the move keeps every NIC on its network (same site, or wired NICs only).
 * `addresses` (NIC name → address) are the addresses it runs with, when known.
 */
export function strandedNics (spec: SiteNetworkSpec, wires: WireSpec[], vm: string, from: string, to: string, addresses: Record<string, string> = {}): StrandedNic[] {
  const v = spec.vms[vm]
  const site = spec.hosts[from]?.site
  const toSite = spec.hosts[to]?.site
  if (v === undefined || site === undefined || toSite === undefined || site === toSite) return []
  const wired = new Set(wiredNics(wires, { [vm]: v })[vm] ?? [])
  const subnet = spec.sites[site]?.subnet
  return v.nics.filter(n => !wired.has(n.name)).map(n => {
    const address = addresses[n.name] ?? n.address
    return { vm, nic: n.name, ...(address !== undefined ? { address } : {}), site, ...(subnet !== undefined ? { subnet } : {}), to, toSite }
  })
}

function describeNic (n: StrandedNic): string {
  return `NIC ${n.nic}${n.address !== undefined ? ` (${n.address})` : ''} is on the site network of ${n.site}${n.subnet !== undefined ? ` (${n.subnet})` : ''}`
}

/** One line for a caller that skips the destination (evacuation, Overdriver): why `to` cannot take the VM. */
export function strandedReason (nics: StrandedNic[]): string | undefined {
  const first = nics[0]
  if (first === undefined) return undefined
  return `${first.vm}'s ${nics.map(describeNic).join(', ')}, which does not reach ${first.to} in site ${first.toSite}`
}

/** Other hosts of `site` in the spec, besides `from`: where the VM could go instead. */
function siteHosts (spec: SiteNetworkSpec, site: string, from: string): string[] {
  return Object.values(spec.hosts).filter(h => h.site === site && h.name !== from).map(h => h.name).sort()
}

/**
 * A move refused by the site-network rule, before anything moved: the VM, each NIC with its
 * address and site network, the destination's site, and the ways out.
 */
export class MigrationNetworkError extends SupercloudError {
  constructor (readonly nics: StrandedNic[], others: string[] = []) {
    const first = nics[0]
    const vm = first?.vm ?? '?'
    const to = first?.to ?? '?'
    const toSite = first?.toSite ?? '?'
    const site = first?.site ?? '?'
    const names = nics.map(n => n.nic).join(', ')
    super('SC_MIGRATION_NETWORK',
      `${vm} cannot move to ${to} (site ${toSite}): it would keep its address${nics.length === 1 ? '' : 'es'} on a network that does not reach ${toSite}, cut off from its peers (nothing was moved):\n` +
      nics.map(n => `  ${describeNic(n)}`).join('\n') + '\n' +
      `Ways out: move it within ${site}${others.length > 0 ? ` (${others.join(', ')})` : ' (add a host to that site)'}; ` +
      `or put ${names} on a VirtualWire wire (network.wires, with an extender in both sites), whose network moves with the VM across sites; ` +
      `or re-address it: give ${names} an address in ${toSite}'s subnet and the VM \`host: ${to}\` in the spec, and \`up\` replaces it there (a new VM, its disks started afresh: not a live move).`,
    { exitCode: 2 })
  }
}

/** Throws MigrationNetworkError when moving `vm` from `from` to `to` would strand a NIC. */
export function assertKeepsNetwork (spec: SiteNetworkSpec, wires: WireSpec[], vm: string, from: string, to: string, addresses: Record<string, string> = {}): void {
  const nics = strandedNics(spec, wires, vm, from, to, addresses)
  if (nics.length > 0) throw new MigrationNetworkError(nics, siteHosts(spec, nics[0]?.site ?? '', from))
}

/**
 * For every VM of `placement` (VM → its host) and every host of the spec, why the VM may not
 * move there by this rule; only refusals are listed. Overdriver's targets carry these.
 */
export function refusedTargets (spec: SiteNetworkSpec, wires: WireSpec[], placement: Record<string, string>): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {}
  for (const host of Object.keys(spec.hosts)) {
    for (const [vm, from] of Object.entries(placement)) {
      const why = strandedReason(strandedNics(spec, wires, vm, from, host))
      if (why !== undefined) (out[host] ??= {})[vm] = why
    }
  }
  return out
}
