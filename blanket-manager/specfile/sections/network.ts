/** `network:` of a spec: switches, extenders and wires (VirtualWire). */
import type { HostSpec, NetworkSpec, VmSpec } from '../../../core/spec.ts'
import type { WireSpec } from '../../../virtualwire/types.ts'
import { crossSiteProblems, emptyNetwork, formatWireEnd, parseWire, wireContext, wireProblems } from '../../../virtualwire/topology/wires.ts'
import type { SpecPath } from '../locate.ts'
import { entries, isObject, str, unknownRef, type NormalizeContext, type Obj } from '../raw.ts'

const DEFAULT_VW_PORT = 4789

export interface NetworkInputs {
  hosts: Record<string, HostSpec>
  vms: Record<string, VmSpec>
  rawSites: Obj
  rawHosts: Obj
}

/** `network:` → NetworkSpec; rules in virtualwire/topology/wires.ts, reported at `network.…` fields. */
export function normalizeNetwork (rawNetwork: unknown, ins: NetworkInputs, { checkName, report }: NormalizeContext): NetworkSpec {
  const network = emptyNetwork(DEFAULT_VW_PORT)
  if (!isObject(rawNetwork)) return network
  if (typeof rawNetwork.port === 'number') network.port = rawNetwork.port
  const hostNames = Object.keys(ins.rawHosts)

  for (const [swName, v] of entries(rawNetwork.switches)) {
    const at: SpecPath = ['network', 'switches', swName]
    checkName('switch', swName, at)
    if (ins.vms[swName] !== undefined) report(at, `'${swName}' is already the name of a vm; a switch needs its own name`, 'key')
    if (!isObject(v)) continue
    const host = str(v.host) ?? ''
    if (host !== '' && !(host in ins.rawHosts)) report([...at, 'host'], unknownRef('host', host, hostNames))
    network.switches[swName] = { name: swName, host }
  }

  for (const [site, v] of entries(rawNetwork.extenders)) {
    const at: SpecPath = ['network', 'extenders', site]
    const knownSite = site in ins.rawSites
    if (!knownSite) report(at, unknownRef('site', site, Object.keys(ins.rawSites)), 'key')
    if (!isObject(v)) continue
    const gateway = str(v.gateway) ?? ''
    const gwHost = ins.hosts[gateway]
    if (gateway !== '' && !(gateway in ins.rawHosts)) report([...at, 'gateway'], unknownRef('host', gateway, hostNames))
    else if (knownSite && gwHost !== undefined && gwHost.site !== '' && gwHost.site !== site) {
      report([...at, 'gateway'], `host '${gateway}' is in site '${gwHost.site}', not '${site}'; an extender's gateway must be a host of its own site`)
    }
    network.extenders[site] = { site, gateway }
  }

  // Wires: syntax first, then the component rules and (for VMs with explicit hosts) the extender rule.
  const parsed: WireSpec[] = []
  const at: number[] = []
  const rawWires = Array.isArray(rawNetwork.wires) ? rawNetwork.wires : []
  rawWires.forEach((w: unknown, i: number) => {
    if (typeof w !== 'string') return
    const r = parseWire(w)
    if (typeof r === 'string') report(['network', 'wires', i], r)
    else { parsed.push(r); at.push(i) }
  })
  const ctx = wireContext({ vms: ins.vms, hosts: ins.hosts, network })
  const problems = wireProblems(ctx, parsed)
  for (const p of problems) report(['network', 'wires', at[p.index] ?? 0], p.message.replace(/network\.wires\[(\d+)\]/g, (_m, k: string) => `network.wires[${at[Number(k)] ?? k}]`))
  const bad = new Set(problems.map(p => p.index))
  const good = parsed.filter((_, i) => !bad.has(i))
  const goodAt = at.filter((_, i) => !bad.has(i))
  for (const p of crossSiteProblems(ctx, good)) report(['network', 'wires', goodAt[p.index] ?? 0], p.message)
  good.forEach((w, i) => {
    for (const e of [w.a, w.b]) {
      const nic = ins.vms[e.component]?.nics.find(n => n.name === e.port)
      if (nic !== undefined && nic.address === undefined) {
        report(['network', 'wires', goodAt[i] ?? 0], `${formatWireEnd(e)} is on the virtual network but has no address; supercloud allocates addresses only on site networks, so give the nic an address`)
      }
    }
  })
  network.wires = parsed
  return network
}
