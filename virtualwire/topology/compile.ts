/**
 * The VirtualWire topology compiler (pure, no I/O). From the spec's `network:` section, where
 * each VM runs and each host's address, it computes the connectors (one per wire, its ID is the
 * VNI), every host's endpoints as the endpoint file interface shows them, the Domain-0
 * switches and which endpoint bridge each wired VM NIC joins. diffEndpoints() turns "what the
 * hosts have" and "what they should have" into the minimal ordered writes to each host's
 * endpoint interface (`create`, `<N>`, `destroy`), which is all the controller executes.
 */
import { createHash } from 'node:crypto'
import type { Spec } from '../../core/spec.ts'
import { tapFor } from '../../core/names.ts'
import {
  canonicalWire, crossSiteProblems, formatWire, formatWireEnd, parseWireEnd, wireContext, wireKey, wireProblems, type WireProblem
} from './wires.ts'
import { parseIpv4 } from '../../core/ipv4.ts'
import {
  DEFAULT_VW_PORT, endpointBridgeName, MAX_CONNECTOR_ID, MIN_CONNECTOR_ID,
  type EndpointAddress, type EndpointConfig, type WireEnd, type WireSpec
} from '../types.ts'
import { TopologyError, WireError } from './errors.ts'

export { wireKey, formatWire, canonicalWire } from './wires.ts'

// ---------------------------------------------------------------- names and addresses

/** Bridge of a Domain-0 switch on its host: "<prefix>s" + 6 hex chars of the switch name (<= 15 chars). */
export function switchBridgeName (prefix: string, switchName: string): string {
  const h = createHash('sha256').update(`switch\0${switchName}`).digest('hex')
  return `${prefix}s${h.slice(0, 6)}`.slice(0, 15)
}

/**
 * The veth pair joining a switch port to the endpoint bridge of connector `id`; `side` is the
 * connector end ('a' or 'b', so a connector between two switch ports on one host has two pairs).
 * `link` is enslaved to the endpoint bridge, `peer` to the switch bridge.
 */
export function switchPortLinkNames (prefix: string, id: number, side: 'a' | 'b'): { link: string, peer: string } {
  const hex = id.toString(16)
  return { link: `${prefix}p${hex}${side}`, peer: `${prefix}q${hex}${side}` }
}

/** `198.18.1.10:4789`. */
export function formatEndpointAddress (a: EndpointAddress): string {
  return `${a.ip}:${a.port}`
}

/** `ip[:port]` → address (port default 4789), or undefined when malformed. */
export function parseEndpointAddress (text: string, defaultPort = DEFAULT_VW_PORT): EndpointAddress | undefined {
  const m = /^([0-9.]+)(?::(\d{1,5}))?$/.exec(text.trim())
  if (m === null || parseIpv4(m[1] ?? '') === undefined) return undefined
  const port = m[2] === undefined ? defaultPort : Number(m[2])
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined
  return { ip: m[1] ?? '', port }
}

function sameAddress (x: EndpointAddress, y: EndpointAddress): boolean {
  return x.ip === y.ip && x.port === y.port
}

// ---------------------------------------------------------------- connector IDs

/**
 * Connector IDs for the wires, keyed by wireKey(). IDs in `existing` are kept for wires that are
 * still there; each new wire gets the lowest ID used by no entry of `existing` (so an ID freed
 * by a wire removed in this same round is not handed to a new wire before its endpoints are
 * gone; it is free again once the caller stores the returned map). Wires keep their order.
 */
export function assignConnectorIds (wires: WireSpec[], existing: Record<string, number>): Record<string, number> {
  const valid = (id: unknown): id is number => typeof id === 'number' && Number.isInteger(id) && id >= MIN_CONNECTOR_ID && id <= MAX_CONNECTOR_ID
  const reserved = new Set<number>(Object.values(existing).filter(valid))
  const out: Record<string, number> = {}
  const taken = new Set<number>()
  const keys = [...new Set(wires.map(wireKey))]
  for (const key of keys) {
    const id = existing[key]
    if (valid(id) && !taken.has(id)) { out[key] = id; taken.add(id) }
  }
  let next = MIN_CONNECTOR_ID
  for (const key of keys) {
    if (out[key] !== undefined) continue
    while (next <= MAX_CONNECTOR_ID && (reserved.has(next) || taken.has(next))) next++
    if (next > MAX_CONNECTOR_ID) throw new TopologyError(`no free connector ID left for ${key} (IDs are ${MIN_CONNECTOR_ID}..${MAX_CONNECTOR_ID})`)
    out[key] = next
    taken.add(next)
  }
  // Keep the wires' order in the returned map.
  return Object.fromEntries(keys.map(k => [k, out[k] as number]))
}

// ---------------------------------------------------------------- compile

/** What to plug into the endpoint bridge at one end of a connector. */
export type Attach =
  | { kind: 'nic', vm: string, nic: string, tap: string }
  | { kind: 'switch-port', switch: string, port: string, switchBridge: string, link: string, peer: string }

export interface ConnectorEnd {
  host: string
  component: string
  port: string
  attach: Attach
  /** Where this end's endpoint receives. */
  address: EndpointAddress
}

export interface Connector {
  id: number
  /** wireKey() of its wire. */
  key: string
  /** Ends in canonical (sorted) order. */
  a: ConnectorEnd
  b: ConnectorEnd
  /** Both ends on one host: one endpoint there, remote == local, no encapsulation. */
  collapsed: boolean
  /** The endpoint bridge (same name on both hosts). */
  bridge: string
}

export interface SwitchPortPlan {
  port: string
  connectorId: number
  /** Endpoint bridge the port's veth `link` is enslaved to. */
  endpointBridge: string
  link: string
  peer: string
}

export interface SwitchPlan {
  name: string
  /** The switch's own bridge (its ports' `peer` ends are enslaved to it). */
  bridge: string
  ports: SwitchPortPlan[]
}

export interface NicPlan {
  connectorId: number
  /** Endpoint bridge the NIC's TAP joins (instead of the site bridge). */
  bridge: string
}

export interface Topology {
  connectors: Connector[]
  /** Host → its endpoints, by ID. Hosts without endpoints are absent. */
  endpoints: Record<string, EndpointConfig[]>
  /** Host → its Domain-0 switches (every declared switch, wired or not), by name. */
  switches: Record<string, SwitchPlan[]>
  /** VM → wired NIC → its connector and endpoint bridge. */
  nics: Record<string, Record<string, NicPlan>>
}

export interface CompileInput {
  spec: Pick<Spec, 'vms' | 'hosts' | 'network'>
  /** VM → host (the planner's placement). */
  placement: Record<string, string>
  /** Host → its address on the underlay (where endpoints receive). */
  hostAddress: Record<string, string>
  /** wireKey → connector ID (assignConnectorIds). */
  ids: Record<string, number>
  /** The supercloud's name prefix. */
  prefix: string
}

export function compileTopology (input: CompileInput): Topology {
  const { spec, placement, hostAddress, ids, prefix } = input
  const network = spec.network
  const port = network.port
  const problems = wireProblems(wireContext(spec, placement), network.wires)
  if (problems.length > 0) throw new TopologyError(problems.map(p => `network.wires[${p.index}]: ${p.message}`).join('\n'))

  const addressOf = (host: string, what: string): EndpointAddress => {
    const ip = hostAddress[host]
    if (ip === undefined || parseIpv4(ip) === undefined) throw new TopologyError(`host ${host} (of ${what}) has no ${ip === undefined ? '' : 'valid '}underlay address`)
    return { ip, port }
  }

  const connectors: Connector[] = []
  const endpoints: Record<string, EndpointConfig[]> = {}
  const switches: Record<string, SwitchPlan[]> = {}
  const nics: Record<string, Record<string, NicPlan>> = {}
  const switchPlans = new Map<string, SwitchPlan>()
  for (const sw of Object.values(network.switches).sort((x, y) => cmp(x.name, y.name))) {
    const plan: SwitchPlan = { name: sw.name, bridge: switchBridgeName(prefix, sw.name), ports: [] }
    switchPlans.set(sw.name, plan)
    ;(switches[sw.host] ??= []).push(plan)
  }
  const usedIds = new Map<number, string>()

  for (const wire of network.wires) {
    const key = wireKey(wire)
    const id = ids[key]
    if (id === undefined) throw new TopologyError(`wire ${key} has no connector ID`)
    const other = usedIds.get(id)
    if (other !== undefined && other !== key) throw new TopologyError(`connector ID ${id} is given to both ${other} and ${key}`)
    if (other !== undefined) continue
    usedIds.set(id, key)
    const bridge = endpointBridgeName(prefix, id)
    const w = canonicalWire(wire)
    const end = (e: WireEnd, side: 'a' | 'b'): ConnectorEnd => {
      const sw = network.switches[e.component]
      if (sw !== undefined) {
        const names = switchPortLinkNames(prefix, id, side)
        const plan = switchPlans.get(sw.name)
        plan?.ports.push({ port: e.port, connectorId: id, endpointBridge: bridge, ...names })
        return {
          host: sw.host, component: e.component, port: e.port, address: addressOf(sw.host, `switch ${sw.name}`),
          attach: { kind: 'switch-port', switch: sw.name, port: e.port, switchBridge: plan?.bridge ?? switchBridgeName(prefix, sw.name), ...names }
        }
      }
      const host = placement[e.component]
      if (host === undefined) throw new TopologyError(`vm ${e.component} (of wire ${key}) is not placed on a host`)
      ;(nics[e.component] ??= {})[e.port] = { connectorId: id, bridge }
      return {
        host, component: e.component, port: e.port, address: addressOf(host, `vm ${e.component}`),
        attach: { kind: 'nic', vm: e.component, nic: e.port, tap: tapFor(prefix, e.component, e.port) }
      }
    }
    const a = end(w.a, 'a')
    const b = end(w.b, 'b')
    const collapsed = a.host === b.host
    connectors.push({ id, key, a, b, collapsed, bridge })
    if (collapsed) {
      ;(endpoints[a.host] ??= []).push({ id, local: { ...a.address }, remote: { ...a.address } })
    } else {
      ;(endpoints[a.host] ??= []).push({ id, local: { ...a.address }, remote: { ...b.address } })
      ;(endpoints[b.host] ??= []).push({ id, local: { ...b.address }, remote: { ...a.address } })
    }
  }

  connectors.sort((x, y) => x.id - y.id)
  for (const list of Object.values(endpoints)) list.sort((x, y) => x.id - y.id)
  for (const plan of switchPlans.values()) plan.ports.sort((x, y) => cmp(x.port, y.port))
  return { connectors, endpoints: sortKeys(endpoints), switches: sortKeys(switches), nics: sortKeys(nics) }
}

// ---------------------------------------------------------------- diff

/** One write to a host's endpoint interface: `echo "<line>" > <root>/<file>`. */
export interface EndpointWrite {
  host: string
  file: 'create' | 'destroy' | `${number}`
  line: string
}

/** The `create` line of an endpoint: `<N> <AdrA> <AdrB>`. */
export function createLine (e: EndpointConfig): string {
  return `${e.id} ${formatEndpointAddress(e.local)} ${formatEndpointAddress(e.remote)}`
}

/**
 * The writes that turn `current` into `wanted`, in a safe order: all creates first (an endpoint
 * whose local address changed is destroyed right before it is created again), then re-points
 * of endpoints whose remote changed (sisters of a moved end; a collapsed endpoint expanding or
 * collapsing), then destroys. Within each phase: hosts by name, IDs ascending. Nothing to do →
 * no writes; running the result of a partial apply again only does what is left.
 */
export function diffEndpoints (current: Record<string, EndpointConfig[]>, wanted: Record<string, EndpointConfig[]>): EndpointWrite[] {
  const creates: EndpointWrite[] = []
  const repoints: EndpointWrite[] = []
  const destroys: EndpointWrite[] = []
  const hosts = [...new Set([...Object.keys(current), ...Object.keys(wanted)])].sort(cmp)
  for (const host of hosts) {
    const cur = new Map((current[host] ?? []).map(e => [e.id, e]))
    const want = [...new Map((wanted[host] ?? []).map(e => [e.id, e])).values()].sort((x, y) => x.id - y.id)
    for (const w of want) {
      const c = cur.get(w.id)
      if (c === undefined) {
        creates.push({ host, file: 'create', line: createLine(w) })
      } else if (!sameAddress(c.local, w.local)) {
        creates.push({ host, file: 'destroy', line: String(w.id) }, { host, file: 'create', line: createLine(w) })
      } else if (!sameAddress(c.remote, w.remote)) {
        repoints.push({ host, file: `${w.id}`, line: formatEndpointAddress(w.remote) })
      }
    }
    const wantedIds = new Set(want.map(w => w.id))
    for (const id of [...cur.keys()].sort((x, y) => x - y)) {
      if (!wantedIds.has(id)) destroys.push({ host, file: 'destroy', line: String(id) })
    }
  }
  return [...creates, ...repoints, ...destroys]
}

// ---------------------------------------------------------------- checks and wire edits

/** A broken rule located in the spec: `field` is `network.wires[<index>]`. */
export interface LocatedWireProblem extends WireProblem {
  field: string
}

/**
 * The extender rule once placement is known: every wire whose ends are placed in different
 * sites needs an extender in both. Returns one problem per offending wire (none = fine).
 */
export function crossSiteCheck (spec: Pick<Spec, 'vms' | 'hosts' | 'network'>, placement: Record<string, string>): LocatedWireProblem[] {
  return crossSiteProblems(wireContext(spec, placement), spec.network.wires)
    .map(p => ({ ...p, field: `network.wires[${p.index}]` }))
}

/** crossSiteCheck, throwing a WireError ("network.wires[3]: … crosses sites but …") when something is wrong. */
export function assertCrossSite (spec: Pick<Spec, 'vms' | 'hosts' | 'network'>, placement: Record<string, string>): void {
  const problems = crossSiteCheck(spec, placement)
  if (problems.length > 0) throw new WireError(problems.map(p => `${p.field}: ${p.message}`))
}

function parseEnds (a: string, b: string): WireSpec {
  const ea = parseWireEnd(a)
  const eb = parseWireEnd(b)
  const bad = [ea, eb].filter((e): e is string => typeof e === 'string')
  if (bad.length > 0) throw new WireError(bad.map(m => `malformed wire '${a.trim()} -- ${b.trim()}': ${m}`))
  return { a: ea as WireEnd, b: eb as WireEnd }
}

/**
 * `supercloud wire connect a.x b.y`: the wires with `a.x -- b.y` appended. Checked with the rules
 * of the spec (component, NIC, switch port, self wire, wired twice, and the extender rule for
 * ends whose host is known: switches, VMs with `host:` or in `placement`). Throws WireError.
 */
export function connectWire (
  spec: Pick<Spec, 'vms' | 'hosts' | 'network'>, wires: WireSpec[], a: string, b: string, placement?: Record<string, string>
): WireSpec[] {
  const wire = parseEnds(a, b)
  const next = [...wires, wire]
  const index = next.length - 1
  const ctx = wireContext(spec, placement)
  const problems = wireProblems(ctx, next).filter(p => p.index === index)
  if (problems.length === 0) problems.push(...crossSiteProblems(ctx, [wire]).map(p => ({ ...p, index })))
  if (problems.length > 0) throw new WireError(problems.map(p => p.message))
  return next
}

/** `supercloud wire disconnect a.x b.y`: the wires without that wire (either order). Throws WireError when it is not there. */
export function disconnectWire (wires: WireSpec[], a: string, b: string): WireSpec[] {
  const wire = parseEnds(a, b)
  const key = wireKey(wire)
  const next = wires.filter(w => wireKey(w) !== key)
  if (next.length === wires.length) {
    const hints: string[] = []
    for (const e of [wire.a, wire.b]) {
      const end = formatWireEnd(e)
      const other = wires.find(w => formatWireEnd(w.a) === end || formatWireEnd(w.b) === end)
      if (other !== undefined) hints.push(`${end} is wired as ${formatWire(other)}`)
    }
    throw new WireError([`there is no wire ${formatWire(wire)}${hints.length > 0 ? `; ${hints.join('; ')}` : ''}`])
  }
  return next
}

function cmp (x: string, y: string): number {
  return x < y ? -1 : x > y ? 1 : 0
}

function sortKeys<T> (r: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(r).sort(([x], [y]) => cmp(x, y)))
}
