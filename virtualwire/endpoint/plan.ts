/**
 * What the endpoint manager changes in the kernel (pure): from the desired endpoints and the
 * links observed on the host, the ordered kernel steps that make them agree. Used for every
 * write (one endpoint) and at start (all endpoints, plus removal of stale devices).
 *
 * Per endpoint N: bridge `<prefix>b<hex N>` (MTU = underlay − 50, vlan_filtering and multicast
 * snooping off, link-local groups forwarded, no netfilter) and, unless collapsed, VXLAN device
 * `<prefix>x<hex N>` (VNI N, local AdrA, dstport, nolearning, one default FDB entry → AdrB)
 * enslaved to the bridge.
 */
import {
  MAX_CONNECTOR_ID, MIN_CONNECTOR_ID, endpointBridgeName, endpointVxlanName,
  type EndpointConfig
} from '../types.ts'
import type { FastPathStep } from './fastpath.ts'
import { isCollapsed } from './interface.ts'

/** Link-local group addresses the bridge forwards (01:80:c2:00:00:0X, all but the restricted 0-2). */
export const BRIDGE_GROUP_FWD_MASK = 0xfff8

/** A link as observed on the host (from `ip -d -j link show` and `bridge -j fdb show`). */
export interface ObservedLink {
  name: string
  /** linkinfo kind: 'bridge', 'vxlan', 'veth', ... ('' when none). */
  kind: string
  mtu: number
  /** Administratively up. */
  up: boolean
  master?: string
  vxlan?: { id: number, local?: string, port: number, learning: boolean }
  bridge?: { vlanFiltering: boolean, mcastSnooping: boolean, stp: boolean, groupFwdMask: number, nfCall: boolean }
  /** VXLAN only: destinations of the all-zeros (default) FDB entry. */
  defaultDsts?: string[]
  /** Has a clsact qdisc. */
  clsact?: boolean
  /** Target of its fast-path ingress filter (`fastpath.ts`; '*' when that device is gone), undefined when none. */
  redirect?: string
}

export type KernelStep =
  | { op: 'addBridge', name: string, mtu: number }
  | { op: 'tuneBridge', name: string, vlanFilteringOff: boolean }
  | { op: 'addVxlan', name: string, id: number, local: string, port: number, mtu: number }
  | { op: 'setMtu', name: string, mtu: number }
  | { op: 'enslave', name: string, bridge: string }
  | { op: 'up', name: string }
  | { op: 'addDefaultDst', name: string, ip: string }
  | { op: 'delDefaultDst', name: string, ip: string }
  | { op: 'delLink', name: string }
  | FastPathStep

/** Human-readable form of a step (logs, test messages). */
export function describeStep (s: KernelStep): string {
  switch (s.op) {
    case 'addBridge': return `add bridge ${s.name} mtu ${s.mtu}`
    case 'tuneBridge': return `set bridge options of ${s.name}${s.vlanFilteringOff ? ' (vlan_filtering off)' : ''}`
    case 'addVxlan': return `add vxlan ${s.name} id ${s.id} local ${s.local} dstport ${s.port} mtu ${s.mtu}`
    case 'setMtu': return `set mtu of ${s.name} to ${s.mtu}`
    case 'enslave': return `enslave ${s.name} to ${s.bridge}`
    case 'up': return `set ${s.name} up`
    case 'addDefaultDst': return `send ${s.name} default traffic to ${s.ip}`
    case 'delDefaultDst': return `stop sending ${s.name} default traffic to ${s.ip}`
    case 'delLink': return `delete ${s.name}`
    case 'redirect': return `redirect ${s.from} ingress to ${s.to} (fast path)`
    case 'unredirect': return `remove the fast-path redirect from ${s.dev}`
  }
}

function bridgeNeedsTuning (l: ObservedLink): boolean {
  const b = l.bridge
  if (b === undefined) return true
  return b.vlanFiltering || b.mcastSnooping || b.stp || b.groupFwdMask !== BRIDGE_GROUP_FWD_MASK || b.nfCall
}

/**
 * Steps that bring endpoint `id` to `desired` (undefined: the endpoint must not exist).
 * `links` holds at least the links named after endpoint `id`.
 */
export function planEndpoint (
  id: number, desired: EndpointConfig | undefined, links: ReadonlyMap<string, ObservedLink>, prefix: string, mtu: number
): KernelStep[] {
  const bridgeName = endpointBridgeName(prefix, id)
  const vxlanName = endpointVxlanName(prefix, id)
  const bridge = links.get(bridgeName)
  const vxlan = links.get(vxlanName)
  const steps: KernelStep[] = []

  if (desired === undefined) {
    if (vxlan !== undefined) steps.push({ op: 'delLink', name: vxlanName })
    if (bridge !== undefined) steps.push({ op: 'delLink', name: bridgeName })
    return steps
  }

  // Bridge.
  if (bridge === undefined || bridge.kind !== 'bridge') {
    if (bridge !== undefined) steps.push({ op: 'delLink', name: bridgeName })
    steps.push({ op: 'addBridge', name: bridgeName, mtu })
    steps.push({ op: 'up', name: bridgeName })
  } else {
    if (bridgeNeedsTuning(bridge)) steps.push({ op: 'tuneBridge', name: bridgeName, vlanFilteringOff: bridge.bridge?.vlanFiltering === true })
    if (bridge.mtu !== mtu) steps.push({ op: 'setMtu', name: bridgeName, mtu })
    if (!bridge.up) steps.push({ op: 'up', name: bridgeName })
  }

  // VXLAN device.
  if (isCollapsed(desired)) {
    if (vxlan !== undefined) steps.push({ op: 'delLink', name: vxlanName })
    return steps
  }
  const v = vxlan?.vxlan
  const matches = vxlan !== undefined && vxlan.kind === 'vxlan' && v !== undefined &&
    v.id === id && v.local === desired.local.ip && v.port === desired.local.port && !v.learning
  if (!matches) {
    if (vxlan !== undefined) steps.push({ op: 'delLink', name: vxlanName })
    steps.push({ op: 'addVxlan', name: vxlanName, id, local: desired.local.ip, port: desired.local.port, mtu })
    steps.push({ op: 'enslave', name: vxlanName, bridge: bridgeName })
    steps.push({ op: 'addDefaultDst', name: vxlanName, ip: desired.remote.ip })
    steps.push({ op: 'up', name: vxlanName })
    return steps
  }
  if (vxlan.mtu !== mtu) steps.push({ op: 'setMtu', name: vxlanName, mtu })
  if (vxlan.master !== bridgeName) steps.push({ op: 'enslave', name: vxlanName, bridge: bridgeName })
  const dsts = vxlan.defaultDsts ?? []
  // Add the new destination before removing old ones: no moment without a sister.
  if (!dsts.includes(desired.remote.ip)) steps.push({ op: 'addDefaultDst', name: vxlanName, ip: desired.remote.ip })
  for (const d of dsts) if (d !== desired.remote.ip) steps.push({ op: 'delDefaultDst', name: vxlanName, ip: d })
  if (!vxlan.up) steps.push({ op: 'up', name: vxlanName })
  return steps
}

/** Endpoint ID and role of a link carrying the manager's naming scheme, undefined otherwise. */
export function endpointLinkOf (name: string, kind: string, prefix: string): { id: number, role: 'bridge' | 'vxlan' } | undefined {
  if (!name.startsWith(prefix)) return undefined
  const m = /^([bx])([0-9a-f]{1,6})$/.exec(name.slice(prefix.length))
  if (m === null) return undefined
  const role = m[1] === 'b' ? 'bridge' : 'vxlan'
  if (kind !== role) return undefined
  const id = Number.parseInt(m[2] ?? '', 16)
  if (id < MIN_CONNECTOR_ID || id > MAX_CONNECTOR_ID) return undefined
  // Only the canonical spelling (no leading zeros) is ours.
  if ((role === 'bridge' ? endpointBridgeName(prefix, id) : endpointVxlanName(prefix, id)) !== name) return undefined
  return { id, role }
}

/**
 * Steps that make the host agree with the whole configuration: every desired endpoint
 * (re)created, and stale endpoint devices (our naming scheme and kind, not configured) removed.
 * Stale VXLAN devices go before stale bridges; desired endpoints in ID order.
 */
export function planReconcile (desired: readonly EndpointConfig[], observed: readonly ObservedLink[], prefix: string, mtu: number): KernelStep[] {
  const links = new Map(observed.map(l => [l.name, l]))
  const wanted = new Set(desired.map(d => d.id))
  const staleVx: KernelStep[] = []
  const staleBr: KernelStep[] = []
  for (const l of observed) {
    const e = endpointLinkOf(l.name, l.kind, prefix)
    if (e === undefined || wanted.has(e.id)) continue
    ;(e.role === 'vxlan' ? staleVx : staleBr).push({ op: 'delLink', name: l.name })
  }
  const steps = [...staleVx, ...staleBr]
  for (const d of [...desired].sort((a, b) => a.id - b.id)) steps.push(...planEndpoint(d.id, d, links, prefix, mtu))
  return steps
}
