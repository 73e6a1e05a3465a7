/**
 * The local driver's network plan (pure): namespace and link names, transit addresses,
 * routes, tbf arguments, delay-relay policy routing, host address allocation.
 *
 * Address plan:
 * - each site gets its `subnet`; its gateway (SiteSpec.gateway, default first host address)
 *   sits on br0 in the site namespace;
 * - site i (sites with a subnet, sorted by name) is joined to the WAN namespace by a /30
 *   from 198.19.255.0/24: WAN end 198.19.255.(4i+1), site end 198.19.255.(4i+2);
 *   at most 64 sites; site subnets must not overlap that /24;
 * - hosts get SiteSpec-independent addresses: HostSpec.local.address when given, else the
 *   lowest free address from .10 of the subnet, hosts taken in name order (so with fresh
 *   state and no explicit addresses host k of a site, sorted by name, gets .10+k); addresses
 *   once given are remembered by the driver and kept.
 */
import type { SiteSpec, WanSpec } from '../../core/spec.ts'
import { LocalDriverError } from '../../core/errors.ts'
import { cidrContains, cidrsOverlap, firstHostOf, formatCidr, formatIpv4, isUsableHost, networkOf, parseCidr, parseIpv4, sizeOf, type Cidr } from '../../core/ipv4.ts'
import { DELAY_TUN, siteNs, wanNs, wanSideLink } from './names.ts'

export const TRANSIT_NET = '198.19.255.0/24'

/** An address the driver was handed; anything else is a LocalDriverError. */
function ipOf (text: string): number {
  const ip = parseIpv4(text)
  if (ip === undefined) throw new LocalDriverError(`not an IPv4 address: '${text}'`)
  return ip
}

/** A CIDR the driver was handed, reduced to its network address. */
function networkCidrOf (text: string): Cidr {
  const c = parseCidr(text)
  if (c === undefined) throw new LocalDriverError(`not an IPv4 CIDR: '${text}'`)
  return { address: networkOf(c), prefix: c.prefix }
}
export const MAX_SITES = 64
/** Routing table used in the WAN namespace to send cross-site packets through the delay relay. */
export const DELAY_TABLE = 100
export const DELAY_RULE_PREF = 1000
/** First host address offset within a site subnet for allocated addresses. */
export const HOST_OFFSET = 10

export interface SitePlan {
  site: string
  index: number
  ns: string
  /** Normalised CIDR, e.g. 198.18.1.0/24. */
  subnet: string
  prefixLen: number
  gateway: string
  /** veth end in the WAN namespace. */
  wanLink: string
  /** WAN-end transit address (the site's default gateway). */
  transitWan: string
  /** Site-end transit address (the WAN's next hop to the subnet). */
  transitSite: string
}

export interface NetworkPlan {
  wanNs: string
  sites: SitePlan[]
  bandwidthBps?: number
  delayMs: number
}

export function planNetwork (prefix: string, sites: Record<string, SiteSpec>, wan: WanSpec): NetworkPlan {
  const transit = networkCidrOf(TRANSIT_NET)
  const withSubnet = Object.values(sites).filter(s => s.subnet !== undefined).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  if (withSubnet.length > MAX_SITES) throw new LocalDriverError(`the local driver supports at most ${MAX_SITES} sites with a subnet`)
  const plans: SitePlan[] = []
  const seen: Array<{ site: string, cidr: Cidr }> = []
  withSubnet.forEach((s, index) => {
    const cidr = networkCidrOf(s.subnet as string)
    if (cidr.prefix > 30) throw new LocalDriverError(`site ${s.name}: subnet ${s.subnet ?? ''} is too small (at most /30)`)
    if (cidrsOverlap(cidr, transit)) throw new LocalDriverError(`site ${s.name}: subnet ${s.subnet ?? ''} overlaps the local driver's transit network ${TRANSIT_NET}`)
    for (const o of seen) {
      if (cidrsOverlap(cidr, o.cidr)) throw new LocalDriverError(`site ${s.name}: subnet ${s.subnet ?? ''} overlaps site ${o.site}`)
    }
    seen.push({ site: s.name, cidr })
    const gw = s.gateway !== undefined ? ipOf(s.gateway) : firstHostOf(cidr)
    if (!isUsableHost(cidr, gw)) throw new LocalDriverError(`site ${s.name}: gateway ${s.gateway ?? ''} is not a host address of ${s.subnet ?? ''}`)
    const base = transit.address + 4 * index
    plans.push({
      site: s.name,
      index,
      ns: siteNs(prefix, s.name),
      subnet: formatCidr(cidr),
      prefixLen: cidr.prefix,
      gateway: formatIpv4(gw),
      wanLink: wanSideLink(s.name),
      transitWan: formatIpv4(base + 1),
      transitSite: formatIpv4(base + 2)
    })
  })
  const plan: NetworkPlan = { wanNs: wanNs(prefix), sites: plans, delayMs: Math.max(0, wan.delayMs) }
  if (wan.bandwidthBps !== undefined) plan.bandwidthBps = wan.bandwidthBps
  return plan
}

export function sitePlan (plan: NetworkPlan, site: string): SitePlan {
  const p = plan.sites.find(s => s.site === site)
  if (p === undefined) throw new LocalDriverError(`site '${site}' has no subnet: the local driver needs one to place hosts there`)
  return p
}

/**
 * `tc` arguments shaping egress of `dev` to `bps` bits/s with a token bucket.
 * Burst: 10 ms worth of bytes, at least 4 full frames; queue: at most 100 ms.
 */
export function tbfArgs (dev: string, bps: number): string[] {
  if (!Number.isFinite(bps) || bps < 8000) throw new LocalDriverError(`WAN bandwidth ${bps} bit/s is below the 8 kbit/s minimum`)
  const rate = Math.round(bps)
  const burst = Math.max(4 * 1514, Math.ceil(rate / 8 / 100))
  return ['tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${rate}bit`, 'burst', String(burst), 'latency', '100ms']
}

/** `ip` argument lists (run in the WAN namespace) steering cross-site packets into the delay TUN. */
export function delayRouting (plan: NetworkPlan): { rules: string[][], route: string[] } {
  return {
    rules: plan.sites.map(s => ['rule', 'add', 'pref', String(DELAY_RULE_PREF + s.index), 'iif', s.wanLink, 'lookup', String(DELAY_TABLE)]),
    route: ['route', 'replace', 'default', 'dev', DELAY_TUN, 'table', String(DELAY_TABLE)]
  }
}

export interface AllocationRequest {
  subnet: string
  gateway: string
  host: string
  /** HostSpec.local.address of this host, when given. */
  explicit?: string
  /** All hosts of the site the driver knows of (this one included), with their explicit addresses. */
  siteHosts: Array<{ name: string, explicit?: string }>
  /** Addresses handed out earlier, by host name. */
  assigned: Record<string, string>
}

/** The address of one host (see the address plan at the top of this file). */
export function allocateHostAddress (req: AllocationRequest): string {
  const cidr = networkCidrOf(req.subnet)
  const gw = ipOf(req.gateway)
  const check = (addr: string, what: string): string => {
    const ip = ipOf(addr)
    if (!isUsableHost(cidr, ip) || ip === gw) throw new LocalDriverError(`host ${req.host}: ${what} ${addr} is not a free host address of ${req.subnet}`)
    return formatIpv4(ip)
  }
  if (req.explicit !== undefined) return check(req.explicit, 'address')
  const prior = req.assigned[req.host]
  if (prior !== undefined && cidrContains(cidr, ipOf(prior))) return check(prior, 'remembered address')
  const taken = new Set<number>([gw])
  for (const h of req.siteHosts) if (h.explicit !== undefined && h.name !== req.host) taken.add(ipOf(h.explicit))
  for (const [name, addr] of Object.entries(req.assigned)) if (name !== req.host) taken.add(ipOf(addr))
  const names = [...new Set([...req.siteHosts.filter(h => h.explicit === undefined).map(h => h.name), req.host])]
    .filter(n => n === req.host || req.assigned[n] === undefined)
    .sort()
  let next = cidr.address + HOST_OFFSET
  const end = cidr.address + sizeOf(cidr)
  for (const name of names) {
    while (next < end && (taken.has(next) || !isUsableHost(cidr, next))) next++
    if (next >= end) break
    if (name === req.host) return formatIpv4(next)
    taken.add(next)
  }
  throw new LocalDriverError(`site subnet ${req.subnet} has no free address left for host ${req.host}`)
}

/**
 * The sites the local driver builds: those with local hosts, and those with no hosts at
 * all. A site whose hosts are all of other drivers (an ec2 site whose `subnet` names the
 * instances' VPC subnet, for extender routes) is not a local network.
 */
export function localSites (sites: Record<string, SiteSpec>, hosts: Record<string, { site: string, driver: string }> | undefined): Record<string, SiteSpec> {
  if (hosts === undefined) return sites
  const all = Object.values(hosts)
  return Object.fromEntries(Object.entries(sites).filter(([name]) => {
    const members = all.filter(h => h.site === name)
    return members.length === 0 || members.some(h => h.driver === 'local')
  }))
}
