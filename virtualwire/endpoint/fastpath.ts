/**
 * The connector fast path (pure): which shape an endpoint's data plane gets, and the `tc`
 * steps that give it that shape.
 *
 * Every endpoint keeps its bridge `<prefix>b<hex N>`: it is where the NIC's owner attaches the
 * TAP (or veth, or Xen vif), so bridge membership is how the manager learns which NIC belongs
 * to an endpoint, and it carries frames whenever the fast path is not installed. When an
 * encapsulated endpoint's bridge holds exactly one NIC besides the VXLAN device, and that NIC
 * is not a Domain-0 switch port, the manager installs the fast path: a clsact qdisc on both
 * devices and, on each one's ingress, `u32 match u32 0 0` with `mirred egress redirect` to the
 * other. tc ingress runs before the bridge's receive handler, so frames go NIC → VXLAN and
 * VXLAN → NIC without entering the bridge (no learning, no flooding, one device less per
 * direction). The bridge stays as the attachment point and the fallback.
 *
 * Shapes:
 *   direct     encapsulated, one NIC attached: tc redirect NIC ↔ VXLAN (bridge bypassed)
 *   bridged    encapsulated, no NIC yet, a Domain-0 switch port, or several links (L2 learning)
 *   collapsed  both ends on this host: the bridge joins the two NICs
 *   none       no endpoint
 */
import { endpointBridgeName, endpointVxlanName, type EndpointConfig } from '../types.ts'
import { isCollapsed } from './interface.ts'
import { endpointLinkOf, type ObservedLink } from './plan.ts'

/** tc filter priority of the fast-path filters (0x5657, "VW"): how the manager finds its own. */
export const FAST_PATH_PREF = 0x5657

/** mirred's target when the device it pointed at was deleted (`tc -j` shows `to_dev: "*"`). */
export const GONE_TARGET = '*'

export type FastPathStep =
  /** On `from`'s ingress: redirect every frame to `to`'s egress (adds clsact when missing, replaces an old filter). */
  | { op: 'redirect', from: string, to: string, addQdisc: boolean, replace: boolean }
  /** Remove the fast-path filter from `dev`'s ingress (frames go to the bridge again). */
  | { op: 'unredirect', dev: string }

export type EndpointShape =
  | { kind: 'none' }
  | { kind: 'collapsed' }
  | { kind: 'bridged', why: string }
  | { kind: 'direct', nic: string, vxlan: string }

/**
 * Domain-0 switch ports: the veth ends the host agent puts into endpoint bridges are named
 * `<prefix>p…` (`switchPortLinkNames`); they keep the bridged shape.
 */
export function isSwitchPortLink (prefix: string, name: string): boolean {
  return name.startsWith(`${prefix}p`)
}

/** Links enslaved to endpoint `id`'s bridge other than its VXLAN device. */
export function attachedLinks (id: number, links: readonly ObservedLink[], prefix: string): ObservedLink[] {
  const bridge = endpointBridgeName(prefix, id)
  const vxlan = endpointVxlanName(prefix, id)
  return links.filter(l => l.master === bridge && l.name !== vxlan)
}

/** The shape endpoint `id` gets, given what is attached to its bridge right now. */
export function endpointShape (id: number, desired: EndpointConfig | undefined, links: readonly ObservedLink[], prefix: string): EndpointShape {
  if (desired === undefined) return { kind: 'none' }
  if (isCollapsed(desired)) return { kind: 'collapsed' }
  const vxlan = endpointVxlanName(prefix, id)
  if (!links.some(l => l.name === vxlan && l.kind === 'vxlan')) return { kind: 'bridged', why: 'no VXLAN device' }
  const nics = attachedLinks(id, links, prefix)
  if (nics.length === 0) return { kind: 'bridged', why: 'no NIC attached' }
  if (nics.length > 1) return { kind: 'bridged', why: `${nics.length} links attached (L2 learning needed)` }
  const nic = nics[0]?.name ?? ''
  if (isSwitchPortLink(prefix, nic)) return { kind: 'bridged', why: `Domain-0 switch port ${nic}` }
  return { kind: 'direct', nic, vxlan }
}

/** One line for logs: `direct <nic> <-> <vxlan>`, `bridged (why)`, ... */
export function describeShape (s: EndpointShape): string {
  switch (s.kind) {
    case 'none': return 'none'
    case 'collapsed': return 'collapsed (bridge)'
    case 'bridged': return `bridged (${s.why})`
    case 'direct': return `fast path ${s.nic} <-> ${s.vxlan} (tc redirect, bridge bypassed)`
  }
}

/** Whether `l`'s fast-path filter belongs to endpoint `id`. */
function ownedBy (l: ObservedLink, id: number, prefix: string): boolean {
  const vxlan = endpointVxlanName(prefix, id)
  return l.redirect !== undefined &&
    (l.name === vxlan || l.redirect === vxlan || (l.redirect === GONE_TARGET && l.master === endpointBridgeName(prefix, id)))
}

/**
 * The tc steps that give endpoint `id` its shape: removals of filters it no longer wants
 * first, then the two redirects of the direct shape (only where missing or pointing elsewhere).
 */
export function planFastPath (id: number, desired: EndpointConfig | undefined, links: readonly ObservedLink[], prefix: string): FastPathStep[] {
  const shape = endpointShape(id, desired, links, prefix)
  const want = new Map<string, string>(shape.kind === 'direct' ? [[shape.nic, shape.vxlan], [shape.vxlan, shape.nic]] : [])
  const steps: FastPathStep[] = []
  for (const l of links) {
    if (ownedBy(l, id, prefix) && !want.has(l.name)) steps.push({ op: 'unredirect', dev: l.name })
  }
  for (const [from, to] of want) {
    const l = links.find(x => x.name === from)
    if (l === undefined || l.redirect === to) continue
    steps.push({ op: 'redirect', from, to, addQdisc: l.clsact !== true, replace: l.redirect !== undefined })
  }
  return steps
}

/**
 * Fast-path steps for the whole configuration: every endpoint's, plus removal of fast-path
 * filters left behind by endpoints that no longer exist (pointing at a VXLAN device of our
 * naming scheme that is not configured, or at a deleted device from a link carrying the prefix).
 * `enabled` false (`--no-fast-path`): remove every fast-path filter of ours, all endpoints bridged.
 */
export function planFastPaths (desired: readonly EndpointConfig[], links: readonly ObservedLink[], prefix: string, enabled = true): FastPathStep[] {
  const steps: FastPathStep[] = []
  const ids = new Set(desired.map(d => d.id))
  const handled = new Set<string>()
  for (const d of [...desired].sort((a, b) => a.id - b.id)) {
    if (enabled) {
      for (const s of planFastPath(d.id, d, links, prefix)) {
        steps.push(s)
        handled.add(s.op === 'redirect' ? s.from : s.dev)
      }
    }
    for (const l of links) {
      if (!ownedBy(l, d.id, prefix) || handled.has(l.name)) continue
      if (!enabled) steps.push({ op: 'unredirect', dev: l.name })
      handled.add(l.name)
    }
  }
  for (const l of links) {
    if (l.redirect === undefined || handled.has(l.name)) continue
    const target = endpointLinkOf(l.redirect, 'vxlan', prefix)
    const ownVxlan = endpointLinkOf(l.name, l.kind, prefix)
    const stale = (target !== undefined && !ids.has(target.id)) ||
      (ownVxlan?.role === 'vxlan' && !ids.has(ownVxlan.id)) ||
      (l.redirect === GONE_TARGET && l.name.startsWith(prefix))
    if (stale) steps.push({ op: 'unredirect', dev: l.name })
  }
  return steps
}
