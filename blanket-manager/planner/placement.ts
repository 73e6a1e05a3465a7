/**
 * Pure placement and addressing: which host runs each VM, which address and MAC
 * each NIC gets, and whether everything fits. No I/O.
 */
import type { HostSpec, Spec, VmSpec } from '../../core/spec.ts'
import { CapacityError } from '../../core/errors.ts'
import { broadcastOf, cidrContains, firstHostOf, formatIpv4, networkOf, parseCidr } from '../../core/ipv4.ts'

export interface ResolvedNic {
  name: string
  /** CIDR, e.g. 198.18.1.101/24. */
  address: string
  mac: string
  /** TAP device name on the host (<= 15 chars, unique per supercloud and NIC). */
  tap: string
}

/** A VM with everything the planner decided for it. */
export interface ResolvedVm {
  spec: VmSpec
  host: string
  nics: ResolvedNic[]
  /** Default gateway for the guest: its site's gateway, when the site has a subnet. */
  gateway?: string
}

/** The site gateway: explicit, else the first address of the subnet. */
export function siteGateway (spec: Spec, site: string): string | undefined {
  const s = spec.sites[site]
  const c = s?.subnet !== undefined ? parseCidr(s.subnet) : undefined
  if (s === undefined || c === undefined) return undefined
  return s.gateway ?? formatIpv4(firstHostOf(c))
}

import { macFor, tapFor } from '../../core/names.ts'
export { macFor, tapFor }

/**
 * Why `vm` cannot run on a Xen host (the Xen backend boots kernel images as PVH domains; its
 * disks are raw images and the swap disk an NBD device in the dom0), or undefined when it can.
 * Field path included.
 */
export function xenUnsupported (spec: Spec, vm: VmSpec): string | undefined {
  if (spec.images[vm.image]?.kind === 'qcow2') return `vms.${vm.name}.image: '${vm.image}' is a qcow2 disk image; Xen hosts boot kernel images only (builtin or kind: kernel)`
  return undefined
}

/**
 * Why `vm` cannot live-migrate between Xen hosts, or undefined when it can: `xl migrate` moves
 * memory and devices, not disk contents, and the swap disk's sector table handover is QEMU's
 * only (drivers/xen/migration.ts). Field path included.
 */
export function xenMigrationUnsupported (spec: Spec, vm: VmSpec): string | undefined {
  const nox = xenUnsupported(spec, vm)
  if (nox !== undefined) return nox
  if (vm.disks.length > 0) return `vms.${vm.name}.disks: a VM with disks does not migrate between Xen hosts yet (xl migrate does not copy disks)`
  if (vm.swapBytes !== undefined) return `vms.${vm.name}.swap: a VM with an Overdriver swap disk does not migrate between Xen hosts yet`
  return undefined
}

/**
 * Places VMs on hosts (explicit `host:` first, then first-fit-decreasing by
 * allocated memory) and checks that every host's VMs fit its memory and vCPUs.
 */
export function place (spec: Spec): Record<string, string> {
  const free = new Map<string, number>()
  const users = new Map<string, string[]>()
  for (const h of Object.values(spec.hosts)) { free.set(h.name, h.memoryBytes); users.set(h.name, []) }
  const out: Record<string, string> = {}
  const take = (vm: VmSpec, host: HostSpec): void => {
    free.set(host.name, (free.get(host.name) ?? 0) - vm.memory.allocatedBytes)
    users.get(host.name)?.push(vm.name)
    out[vm.name] = host.name
  }
  const vms = Object.values(spec.vms)
  for (const vm of vms.filter(v => v.host !== undefined)) {
    const host = spec.hosts[vm.host ?? '']
    if (host === undefined) throw new CapacityError(`vms.${vm.name}.host: no host named '${vm.host ?? ''}'`)
    if (vm.cpus > host.cpus) throw new CapacityError(`vms.${vm.name}: needs ${vm.cpus} vCPUs but host ${host.name} offers ${host.cpus}`)
    const nox = host.hypervisor.backend === 'xen' ? xenUnsupported(spec, vm) : undefined
    if (nox !== undefined) throw new CapacityError(`${nox} (host ${host.name} runs Xen)`)
    const left = free.get(host.name) ?? 0
    if (vm.memory.allocatedBytes > left) {
      throw new CapacityError(`vms.${vm.name}: needs ${mib(vm.memory.allocatedBytes)} of memory but host ${host.name} has ${mib(Math.max(0, left))} left of ${mib(host.memoryBytes)}` +
        ((users.get(host.name) ?? []).length > 0 ? ` (already placed: ${(users.get(host.name) ?? []).join(', ')})` : ''))
    }
    take(vm, host)
  }
  const unplaced = vms.filter(v => v.host === undefined)
    .sort((a, b) => b.memory.allocatedBytes - a.memory.allocatedBytes || a.name.localeCompare(b.name))
  const byName = Object.values(spec.hosts).sort((a, b) => a.name.localeCompare(b.name))
  for (const vm of unplaced) {
    const host = byName
      .find(h => vm.cpus <= h.cpus && vm.memory.allocatedBytes <= (free.get(h.name) ?? 0) && (h.hypervisor.backend !== 'xen' || xenUnsupported(spec, vm) === undefined))
    if (host === undefined) {
      const nox = Object.values(spec.hosts).some(h => h.hypervisor.backend === 'xen') ? xenUnsupported(spec, vm) : undefined
      throw new CapacityError(`vms.${vm.name}: no host has ${mib(vm.memory.allocatedBytes)} of memory and ${vm.cpus} vCPUs free${nox !== undefined ? ` that can run it (Xen hosts cannot: ${nox})` : ''}`)
    }
    take(vm, host)
  }
  return out
}

function mib (bytes: number): string {
  return bytes % (1024 ** 3) === 0 ? `${bytes / 1024 ** 3}G` : `${Math.round(bytes / 1024 ** 2)}M`
}

/**
 * Places VMs and fills in NIC addresses (from the host's site subnet, from .100 up), MACs and TAP
 * names. `kept`: the NICs VMs run with now (the state's records); an allocated address they have
 * stays theirs while it is in their site's subnet, so adding a VM never renumbers the others.
 */
export function resolveVms (spec: Spec, prefix: string, kept: Record<string, Array<{ name: string, address: string }>> = {}): Record<string, ResolvedVm> {
  const placement = place(spec)
  const used = new Set<string>()
  for (const vm of Object.values(spec.vms)) for (const n of vm.nics) if (n.address !== undefined) used.add(n.address.split('/')[0] ?? '')
  for (const h of Object.values(spec.hosts)) if (h.local?.address !== undefined) used.add(h.local.address)
  const keptAddress = new Map<string, string>()
  for (const vm of Object.values(spec.vms).sort((a, b) => a.name.localeCompare(b.name))) {
    const subnet = spec.sites[spec.hosts[placement[vm.name] ?? '']?.site ?? '']?.subnet
    const c = subnet !== undefined ? parseCidr(subnet) : undefined
    for (const n of vm.nics) {
      const had = kept[vm.name]?.find(k => k.name === n.name)?.address
      const a = had !== undefined ? parseCidr(had) : undefined
      const ip = had?.split('/')[0] ?? ''
      if (n.address !== undefined || a === undefined || c === undefined || a.prefix !== c.prefix || !cidrContains(c, a.address) || used.has(ip)) continue
      used.add(ip)
      keptAddress.set(`${vm.name}.${n.name}`, had ?? '')
    }
  }
  // Per subnet, the offset below which every address is taken (`used` only grows): each allocation starts there.
  const nextFree = new Map<string, number>()
  const wired = wiredNicNames(spec)
  const out: Record<string, ResolvedVm> = {}
  for (const vm of Object.values(spec.vms).sort((a, b) => a.name.localeCompare(b.name))) {
    const hostName = placement[vm.name] ?? ''
    const host = spec.hosts[hostName]
    const site = host !== undefined ? spec.sites[host.site] : undefined
    const gateway = host !== undefined ? siteGateway(spec, host.site) : undefined
    const nics: ResolvedNic[] = vm.nics.map(n => {
      let address = n.address ?? keptAddress.get(`${vm.name}.${n.name}`)
      if (address === undefined) {
        if (site?.subnet === undefined) throw new CapacityError(`vms.${vm.name}.nics.${n.name}: no address given and site ${host?.site ?? '?'} has no subnet to allocate from`)
        const c = parseCidr(site.subnet)
        if (c === undefined) throw new CapacityError(`sites.${host?.site ?? '?'}.subnet: '${site.subnet}' is not a CIDR`)
        const base = networkOf(c)
        const key = `${base}/${c.prefix}`
        let found: string | undefined
        let i = nextFree.get(key) ?? 100
        for (; base + i < broadcastOf(c); i++) {
          const ip = formatIpv4(base + i)
          if (!used.has(ip) && ip !== gateway) { found = ip; break }
        }
        nextFree.set(key, i)
        if (found === undefined) throw new CapacityError(`vms.${vm.name}.nics.${n.name}: site ${host?.site ?? '?'} subnet ${site.subnet} has no free address`)
        used.add(found)
        address = `${found}/${c.prefix}`
      }
      return { name: n.name, address, mac: n.mac ?? macFor(spec.name, vm.name, n.name), tap: tapFor(prefix, vm.name, n.name) }
    })
    const r: ResolvedVm = { spec: vm, host: hostName, nics }
    const onSite = vm.nics.some(n => wired.get(vm.name)?.has(n.name) !== true)
    if (vm.gateway !== undefined) r.gateway = vm.gateway
    else if (gateway !== undefined && onSite) r.gateway = gateway
    out[vm.name] = r
  }
  return out
}

/**
 * Where `supercloud migrate` moved a VM. It stays there across later `up`s as long as the
 * spec's own `host:` for that VM is what it was at migration time (`specHost`); once the
 * user edits that line, the spec wins again.
 */
export interface PlacementOverride {
  host: string
  specHost?: string
}

export function withOverrides (spec: Spec, overrides: Record<string, PlacementOverride>): Spec {
  const vms: Spec['vms'] = {}
  for (const [name, vm] of Object.entries(spec.vms)) {
    const o = overrides[name]
    vms[name] = o !== undefined && spec.hosts[o.host] !== undefined && vm.host === o.specHost ? { ...vm, host: o.host } : vm
  }
  return { ...spec, vms }
}

/** VM name -> names of its NICs that are VirtualWire NICs (an end of some wire in the spec). */
function wiredNicNames (spec: Spec): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>()
  for (const w of spec.network?.wires ?? []) {
    for (const e of [w.a, w.b]) {
      const set = out.get(e.component)
      if (set === undefined) out.set(e.component, new Set([e.port])); else set.add(e.port)
    }
  }
  return out
}
