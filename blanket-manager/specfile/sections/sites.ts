/** `sites:` (subnets and gateways) and `wan:` of a spec. */
import type { SiteSpec, WanSpec } from '../../../core/spec.ts'
import { parseBandwidth, parseDuration } from '../../../core/units.ts'
import { broadcastOf, cidrContains, cidrsOverlap, firstHostOf, formatCidr, formatIpv4, networkOf, parseCidr, parseIpv4, type Cidr } from '../../../core/ipv4.ts'
import type { SpecPath } from '../locate.ts'
import { entries, isObject, tryParse, type NormalizeContext, type Obj, type Report } from '../raw.ts'

export interface SitesResult {
  sites: Record<string, SiteSpec>
  /** Site name → its subnet (only valid subnets). */
  nets: Map<string, Cidr>
  /** Site name → its gateway address (given or the subnet's first host). */
  gateways: Map<string, number>
}

export function normalizeSites (rawSites: unknown, ctx: NormalizeContext): SitesResult {
  const out: SitesResult = { sites: {}, nets: new Map(), gateways: new Map() }
  for (const [siteName, v] of entries(rawSites)) {
    ctx.checkName('site', siteName, ['sites', siteName])
    const s = isObject(v) ? v : {}
    const site: SiteSpec = { name: siteName }
    out.sites[siteName] = site
    const at: SpecPath = ['sites', siteName, 'subnet']
    const c = typeof s.subnet === 'string' ? parseCidr(s.subnet) : undefined
    if (c !== undefined) {
      const ok = siteSubnet(c, siteName, at, out.nets, ctx.report)
      if (ok) {
        out.nets.set(siteName, c)
        site.subnet = formatCidr(c)
      }
    }
    const gAt: SpecPath = ['sites', siteName, 'gateway']
    siteGateway(s, siteName, gAt, out, ctx.report)
    const g = out.gateways.get(siteName)
    if (g !== undefined) {
      site.gateway = formatIpv4(g)
      ctx.claim(g, `the gateway of site '${siteName}'`, s.gateway !== undefined ? gAt : at)
    }
  }
  return out
}

/** Checks a site subnet against its own bits and the other sites; true when it can be used. */
function siteSubnet (c: Cidr, siteName: string, at: SpecPath, nets: Map<string, Cidr>, report: Report): boolean {
  const net = networkOf(c)
  if (c.address !== net) {
    report(at, `${formatCidr(c)} has host bits set; did you mean ${formatIpv4(net)}/${c.prefix}?`)
    return false
  }
  if (c.prefix > 30) {
    report(at, `a /${c.prefix} subnet has no room for a gateway and hosts; use /30 or larger, e.g. /24`)
    return false
  }
  for (const [other, oc] of nets) {
    if (cidrsOverlap(c, oc)) report(at, `${formatCidr(c)} overlaps ${formatCidr(oc)} of site '${other}'`)
  }
  return true
}

/** Sets the site's gateway in `out.gateways`: the given one when valid, else the subnet's first host. */
function siteGateway (s: Obj, siteName: string, gAt: SpecPath, out: SitesResult, report: Report): void {
  const gw = typeof s.gateway === 'string' ? parseIpv4(s.gateway) : undefined
  const sub = out.nets.get(siteName)
  if (gw === undefined) {
    if (sub !== undefined && s.gateway === undefined) out.gateways.set(siteName, firstHostOf(sub))
    return
  }
  if (s.subnet === undefined) report(gAt, 'a gateway needs a subnet on the same site')
  else if (sub !== undefined) {
    if (!cidrContains(sub, gw)) report(gAt, `gateway ${formatIpv4(gw)} is outside the site subnet ${formatCidr(sub)}`)
    else if (gw === networkOf(sub) || gw === broadcastOf(sub)) report(gAt, `gateway ${formatIpv4(gw)} is the ${gw === networkOf(sub) ? 'network' : 'broadcast'} address of ${formatCidr(sub)}`)
    else out.gateways.set(siteName, gw)
  }
}

export function normalizeWan (raw: unknown, report: Report): WanSpec {
  const wan: WanSpec = { delayMs: 0 }
  const rawWan = isObject(raw) ? raw : {}
  if (rawWan.bandwidth !== undefined) {
    const bps = tryParse(parseBandwidth, rawWan.bandwidth)
    if (bps === 0) report(['wan', 'bandwidth'], 'must be above 0; leave bandwidth out for an unlimited WAN')
    else if (bps !== undefined) wan.bandwidthBps = bps
  }
  if (rawWan.delay !== undefined) {
    const ms = tryParse(parseDuration, rawWan.delay)
    if (ms !== undefined) wan.delayMs = ms
  }
  return wan
}
