/**
 * The `network:` section of the spec (VirtualWire, seed 002 ch. 5): wire syntax and every
 * rule about wires, switches and extenders, as pure functions. load.ts uses them to report
 * spec issues with positions; the planner calls crossSiteProblems() once placement is known;
 * virtualwire/topology uses them for `supercloud wire connect/disconnect`. Messages are the
 * same everywhere.
 */
import type { WireEnd, WireSpec } from '../types.ts'
import type { NetworkSpec, Spec } from '../../core/spec.ts'
import { suggest } from '../../core/suggest.ts'

/** Switch port names: short lowercase tokens (`p1`, `uplink0`). */
export const SWITCH_PORT = /^[a-z0-9]+$/
export const SWITCH_PORT_MAX = 15

/** The form of a wire, shown in syntax errors. */
export const WIRE_FORM = "'<component>.<port> -- <component>.<port>', e.g. 'web1.eth0 -- sw1.p1'"

/** A network with nothing in it (a spec without `network:`). */
export function emptyNetwork (port = 4789): NetworkSpec {
  return { port, switches: {}, wires: [], extenders: {} }
}

export function formatWireEnd (e: WireEnd): string {
  return `${e.component}.${e.port}`
}

/** `web1.eth0 -- sw1.p1`, ends in the order given. */
export function formatWire (w: WireSpec): string {
  return `${formatWireEnd(w.a)} -- ${formatWireEnd(w.b)}`
}

/** The same wire with its ends in canonical (sorted) order. */
export function canonicalWire (w: WireSpec): WireSpec {
  return formatWireEnd(w.a) <= formatWireEnd(w.b) ? { a: w.a, b: w.b } : { a: w.b, b: w.a }
}

/** Canonical identity of a wire: its ends sorted, so `a -- b` and `b -- a` have one key. */
export function wireKey (w: WireSpec): string {
  return formatWire(canonicalWire(w))
}

const END = /^([a-z](?:[a-z0-9-]*[a-z0-9])?)\.([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)$/

/** `web1.eth0` → { component, port }, or a message saying what is wrong. */
export function parseWireEnd (text: string): WireEnd | string {
  const t = text.trim()
  const m = END.exec(t)
  if (m === null) {
    if (!t.includes('.')) return `'${t}' needs a port: write <component>.<port>, e.g. '${t === '' ? 'web1' : t}.eth0'`
    return `'${t}' is not <component>.<port> (lowercase letters, digits and '-', one '.')`
  }
  return { component: m[1] ?? '', port: m[2] ?? '' }
}

/** `web1.eth0 -- sw1.p1` → a wire, or a message. Spaces around `--` are optional. */
export function parseWire (text: string): WireSpec | string {
  let parts = text.trim().split(/\s+--\s+/)
  if (parts.length === 1) parts = text.trim().split('--')
  if (parts.length !== 2) return `malformed wire '${text.trim()}': expected ${WIRE_FORM}`
  const a = parseWireEnd(parts[0] ?? '')
  const b = parseWireEnd(parts[1] ?? '')
  if (typeof a === 'string') return `malformed wire '${text.trim()}': ${a}`
  if (typeof b === 'string') return `malformed wire '${text.trim()}': ${b}`
  return { a, b }
}

/** What the wire rules need to know about a spec; build it with wireContext(). */
export interface WireContext {
  /** VM name → its NIC names. */
  vms: Record<string, { nics: string[] }>
  /** Switch name → its host. */
  switches: Record<string, { host: string }>
  /** Host name → site name. */
  hostSites: Record<string, string>
  /** Sites that have an extender. */
  extenderSites: string[]
  /** Where VMs run, as far as it is known (explicit `host:`, or the planner's placement). */
  placement: Record<string, string>
}

/** The context of a spec; `placement` defaults to the VMs' explicit hosts. */
export function wireContext (spec: Pick<Spec, 'vms' | 'hosts' | 'network'>, placement?: Record<string, string>): WireContext {
  const place: Record<string, string> = {}
  if (placement !== undefined) Object.assign(place, placement)
  else for (const vm of Object.values(spec.vms)) if (vm.host !== undefined) place[vm.name] = vm.host
  return {
    vms: Object.fromEntries(Object.values(spec.vms).map(v => [v.name, { nics: v.nics.map(n => n.name) }])),
    switches: Object.fromEntries(Object.entries(spec.network.switches).map(([n, s]) => [n, { host: s.host }])),
    hostSites: Object.fromEntries(Object.values(spec.hosts).map(h => [h.name, h.site])),
    extenderSites: Object.keys(spec.network.extenders),
    placement: place
  }
}

/** One broken rule, about `wires[index]`. */
export interface WireProblem {
  index: number
  message: string
}

/**
 * The component-level rules for a list of wires: unknown component, unknown NIC on a VM, bad
 * switch port name, a wire from a component to itself, a NIC or switch port wired twice.
 * Cross-site rules are separate (crossSiteProblems) since they need placement.
 */
export function wireProblems (ctx: WireContext, wires: WireSpec[]): WireProblem[] {
  const problems: WireProblem[] = []
  const usedBy = new Map<string, number>()
  const components = [...Object.keys(ctx.vms), ...Object.keys(ctx.switches)]
  wires.forEach((w, index) => {
    const report = (message: string): void => { problems.push({ index, message }) }
    let ok = true
    for (const e of [w.a, w.b]) {
      const vm = ctx.vms[e.component]
      const sw = ctx.switches[e.component]
      if (vm !== undefined) {
        if (!vm.nics.includes(e.port)) {
          report(`vm '${e.component}' has no nic '${e.port}'${vm.nics.length > 0 ? `; its nics: ${vm.nics.join(', ')}` : '; it has no nics'}`)
          ok = false
        }
      } else if (sw !== undefined) {
        if (!SWITCH_PORT.test(e.port) || e.port.length > SWITCH_PORT_MAX) {
          report(`switch port '${e.port}' of '${e.component}' must be 1-${SWITCH_PORT_MAX} lowercase letters and digits, e.g. p1`)
          ok = false
        }
      } else {
        const guess = suggest(e.component, components)
        report(`unknown component '${e.component}'${guess !== undefined ? ` (did you mean '${guess}'?)` : components.length > 0 ? `; vms and switches: ${components.join(', ')}` : '; no vms or switches are defined'}`)
        ok = false
      }
    }
    if (w.a.component === w.b.component) {
      report(`${formatWire(w)} wires '${w.a.component}' to itself`)
      ok = false
    }
    if (!ok) return
    for (const e of [w.a, w.b]) {
      const key = formatWireEnd(e)
      const prior = usedBy.get(key)
      if (prior !== undefined) {
        const other = wires[prior]
        report(`${key} is already wired by network.wires[${prior}]${other !== undefined ? ` (${formatWire(other)})` : ''}`)
      } else {
        usedBy.set(key, index)
      }
    }
  })
  return problems
}

/** The site of one wire end, when its host is known. */
export function siteOfEnd (ctx: WireContext, e: WireEnd): string | undefined {
  const host = ctx.switches[e.component]?.host ?? ctx.placement[e.component]
  return host !== undefined ? ctx.hostSites[host] : undefined
}

/**
 * The extender rule: a wire whose ends are placed in different sites needs an extender in
 * both sites. Ends whose host is not known yet (VM without `host:` before placement) are skipped.
 */
export function crossSiteProblems (ctx: WireContext, wires: WireSpec[]): WireProblem[] {
  const problems: WireProblem[] = []
  const extended = new Set(ctx.extenderSites)
  wires.forEach((w, index) => {
    const sa = siteOfEnd(ctx, w.a)
    const sb = siteOfEnd(ctx, w.b)
    if (sa === undefined || sb === undefined || sa === sb) return
    const missing = [sa, sb].filter(s => !extended.has(s))
    if (missing.length === 0) return
    const which = missing.length === 1 ? `site ${missing[0] ?? ''} has no extender` : `sites ${missing.join(' and ')} have no extender`
    problems.push({
      index,
      message: `${formatWireEnd(w.a)} (site ${sa}) -- ${formatWireEnd(w.b)} (site ${sb}) crosses sites but ${which}`
    })
  })
  return problems
}

/** VM NICs on the virtual network: `vm` → NIC names. They are not attached to a site bridge. */
export function wiredNics (wires: WireSpec[], vms: Record<string, unknown>): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const w of wires) {
    for (const e of [w.a, w.b]) {
      if (vms[e.component] === undefined) continue
      const list = out[e.component] ?? (out[e.component] = [])
      if (!list.includes(e.port)) list.push(e.port)
    }
  }
  return out
}
