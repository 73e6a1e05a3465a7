/**
 * Synthetic supercloud specs and states of a given size, for bench/scale-pure.ts: N local
 * hosts in sites of up to 100 hosts, M VMs (half placed with `host:`, half left to the
 * planner; each with a site NIC whose address the planner allocates and three wired NICs) and
 * 2·M wires (VM pairs twice, every VM once to its host's switch), extenders in every site.
 * Pure: no I/O. Addresses stay in 198.18.0.0/15 (sites in 198.18.0.0/16 as /20s, wired NICs
 * in 198.19.0.0/16).
 */
import { formatIpv4, parseIpv4 } from '../../core/ipv4.ts'
import type { Spec } from '../../core/spec.ts'
import type { HostRow, StateSnapshot, VmRow } from '../../blanket-manager/state/store.ts'
import { hostHash, vmHash, type Observation } from '../../blanket-manager/planner/plan.ts'
import type { ResolvedVm } from '../../blanket-manager/planner/placement.ts'

export interface ScaleSize { hosts: number, vms: number }

const SITE_BASE = parseIpv4('198.18.0.0') ?? 0
const WIRED_BASE = parseIpv4('198.19.0.0') ?? 0
const SITE_SPAN = 4096 // a /20 per site: room for ~4,000 VMs
const MAX_SITES = 16

/** Sites for `hosts` hosts: one per 100 hosts, at most 16. */
export function siteCount (hosts: number): number {
  return Math.min(MAX_SITES, Math.max(1, Math.ceil(hosts / 100)))
}

const hostName = (i: number): string => `h${i}`
const vmName = (i: number): string => `vm${i}`
const siteName = (i: number): string => `s${i}`

/** The spec's YAML text (what `supercloud -f` would read). */
export function scaleSpecYaml (size: ScaleSize): string {
  const sites = siteCount(size.hosts)
  const hostSite = (h: number): number => h % sites
  const lines: string[] = ['name: scale', 'sites:']
  for (let s = 0; s < sites; s++) lines.push(`  ${siteName(s)}: { subnet: ${formatIpv4(SITE_BASE + s * SITE_SPAN)}/20 }`)
  lines.push('hosts:')
  // Room for twice the VMs a host gets on average (placement has slack), 128 MiB each.
  const perHost = Math.ceil(size.vms / size.hosts)
  const memMiB = Math.max(1024, perHost * 2 * 128)
  for (let h = 0; h < size.hosts; h++) lines.push(`  ${hostName(h)}: { site: ${siteName(hostSite(h))}, memory: ${memMiB}M, cpus: 64, hypervisor: { accel: tcg } }`)
  lines.push('images:', '  tiny: { builtin: tiny }', 'vms:')
  for (let v = 0; v < size.vms; v++) {
    const wired = [0, 1, 2].map(k => `{ name: w${k}, address: ${formatIpv4(WIRED_BASE + 3 * v + k + 1)}/16 }`).join(', ')
    const host = v % 2 === 0 ? ` host: ${hostName(v % size.hosts)},` : ''
    lines.push(`  ${vmName(v)}: { image: tiny,${host} cpus: 1, memory: 128M, nics: [ { name: eth0 }, ${wired} ] }`)
  }
  lines.push('network:', '  switches:')
  for (let h = 0; h < size.hosts; h++) lines.push(`    sw${h}: { host: ${hostName(h)} }`)
  lines.push('  extenders:')
  for (let s = 0; s < sites; s++) lines.push(`    ${siteName(s)}: { gateway: ${hostName(s)} }`)
  lines.push('  wires:')
  for (let v = 0; v + 1 < size.vms; v += 2) {
    lines.push(`    - ${vmName(v)}.w0 -- ${vmName(v + 1)}.w0`, `    - ${vmName(v)}.w1 -- ${vmName(v + 1)}.w1`)
  }
  for (let v = 0; v < size.vms; v++) lines.push(`    - ${vmName(v)}.w2 -- sw${v % size.hosts}.p${v}`)
  lines.push('overdriver: { confidence: 0.97 }', '')
  return lines.join('\n')
}

/** The state of a supercloud that runs `spec` exactly as `resolved` places it (a no-op `up`'s input). */
export function convergedState (spec: Spec, resolved: Record<string, ResolvedVm>): StateSnapshot {
  const hosts: HostRow[] = Object.values(spec.hosts).map((h, i) => ({
    name: h.name,
    site: h.site,
    driver: h.driver,
    specHash: hostHash(h),
    status: 'ready',
    bootstrapped: true,
    record: {
      name: h.name, site: h.site, driver: h.driver, address: formatIpv4(SITE_BASE + 10 + i),
      ssh: { host: formatIpv4(SITE_BASE + 10 + i), port: 22, username: 'root', privateKeyPath: '/nonexistent' },
      stateDir: `/scale/${h.name}`, guestBridge: 'br0', driverData: {}
    }
  }))
  const vms: VmRow[] = Object.values(resolved).map(r => ({
    name: r.spec.name,
    host: r.host,
    specHash: vmHash(r),
    status: 'ready',
    record: { host: r.host, nics: r.nics, memory: r.spec.memory, cpus: r.spec.cpus, image: r.spec.image, disks: r.spec.disks.map(d => ({ name: d.name, sizeBytes: d.sizeBytes })) }
  }))
  return { networks: [{ driver: 'local', specHash: '', status: 'ready' }], hosts, vms }
}

/** What a no-op `up` observes: every host running, every VM running. */
export function healthyObservation (state: StateSnapshot): Observation {
  return {
    hosts: Object.fromEntries(state.hosts.map(h => [h.name, 'running' as const])),
    vms: Object.fromEntries(state.vms.map(v => [v.name, 'running']))
  }
}

/** Each host's underlay address (the topology compiler's input), from a converged state. */
export function hostAddresses (state: StateSnapshot): Record<string, string> {
  return Object.fromEntries(state.hosts.map(h => [h.name, h.record?.address ?? '']))
}
