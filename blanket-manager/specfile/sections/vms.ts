/** `vms:` of a spec: image/host references, memory, disks, nics (addresses, MACs), swap, firewall. */
import type { DiskSpec, NicSpec, VmSpec } from '../../../core/spec.ts'
import { formatBytes, parseSize } from '../../../core/units.ts'
import { broadcastOf, formatCidr, formatIpv4, networkOf, parseCidr } from '../../../core/ipv4.ts'
import { isL2fwMatch } from '../../../images/guest/cmdline.ts'
import type { SpecPath } from '../locate.ts'
import { checkValue } from '../schema.ts'
import { NAME_LIMITS, nameProblem } from '../names.ts'
import { entries, isObject, MIB, str, tryParse, unknownRef, type NormalizeContext, type Obj, type Report } from '../raw.ts'

const DEFAULT_VM_CPUS = 1

/** Names defined elsewhere in the spec that vms refer to. */
export interface VmRefs { rawImages: Obj, rawHosts: Obj }

export function normalizeVms (rawVms: unknown, refs: VmRefs, ctx: NormalizeContext): Record<string, VmSpec> {
  const vms: Record<string, VmSpec> = {}
  const macs = new Map<string, string>()
  for (const [vmName, v] of entries(rawVms)) {
    const at: SpecPath = ['vms', vmName]
    ctx.checkName('vm', vmName, at)
    if (!isObject(v)) continue
    vms[vmName] = normalizeVm(vmName, v, at, refs, macs, ctx)
  }
  return vms
}

function normalizeVm (vmName: string, v: Obj, at: SpecPath, refs: VmRefs, macs: Map<string, string>, ctx: NormalizeContext): VmSpec {
  const { report } = ctx
  const image = str(v.image) ?? ''
  if (image !== '' && !(image in refs.rawImages)) report([...at, 'image'], unknownRef('image', image, Object.keys(refs.rawImages)))
  const hostName = str(v.host)
  if (hostName !== undefined && !(hostName in refs.rawHosts)) report([...at, 'host'], unknownRef('host', hostName, Object.keys(refs.rawHosts)))
  const memory = vmMemory(v.memory, [...at, 'memory'], report)
  const disks = vmDisks(vmName, v.disks, at, report)
  const nics = vmNics(vmName, v.nics, at, macs, ctx)
  const vm: VmSpec = {
    name: vmName,
    image,
    cpus: typeof v.cpus === 'number' ? v.cpus : DEFAULT_VM_CPUS,
    memory,
    disks,
    nics
  }
  if (hostName !== undefined) vm.host = hostName
  if (v.swap !== undefined) {
    const swap = tryParse(parseSize, v.swap)
    if (swap === 0) report([...at, 'swap'], 'must be above 0 (leave swap out for no swap disk)')
    else if (swap !== undefined && swap % MIB !== 0) report([...at, 'swap'], `${formatBytes(swap)} is not a whole number of MiB`)
    else if (swap !== undefined) vm.swapBytes = swap
  }
  if (typeof v.gateway === 'string') vm.gateway = v.gateway
  if (typeof v.firewall === 'object' && v.firewall !== null) vm.firewall = vmFirewall(vmName, v.firewall, nics, at, report)
  return vm
}

/** memory: a size (requested = allocated) or { requested, allocated }. */
function vmMemory (raw: unknown, mAt: SpecPath, report: Report): VmSpec['memory'] {
  let requested: number | undefined
  let allocated: number | undefined
  if (isObject(raw)) {
    requested = tryParse(parseSize, raw.requested)
    allocated = raw.allocated === undefined ? requested : tryParse(parseSize, raw.allocated)
    if (requested !== undefined) checkVmMemory(requested, [...mAt, 'requested'], report)
    if (allocated === 0) report([...mAt, 'allocated'], 'must be above 0')
    else if (allocated !== undefined && requested !== undefined && allocated > requested) {
      report([...mAt, 'allocated'], `${formatBytes(allocated)} is above requested ${formatBytes(requested)}`)
    }
  } else {
    requested = allocated = tryParse(parseSize, raw)
    if (requested !== undefined) checkVmMemory(requested, mAt, report)
  }
  return { requestedBytes: requested ?? 0, allocatedBytes: allocated ?? 0 }
}

function checkVmMemory (bytes: number, at: SpecPath, report: Report): void {
  if (bytes === 0) report(at, 'must be above 0')
  else if (bytes % MIB !== 0) report(at, `${formatBytes(bytes)} is not a whole number of MiB; QEMU sizes guest memory in MiB`)
}

/** The name of list item `i` (explicit or `<prefix><i>`), checked and unique within the vm. */
function itemName (kind: 'disk' | 'nic', vmName: string, item: Obj, i: number, iAt: SpecPath, taken: Set<string>, report: Report): string {
  const explicit = str(item.name)
  const name = explicit ?? `${kind === 'disk' ? 'disk' : 'eth'}${i}`
  if (explicit !== undefined) {
    const problem = nameProblem(kind, explicit, NAME_LIMITS[kind])
    if (problem !== undefined) report([...iAt, 'name'], problem)
  }
  if (taken.has(name)) report(explicit !== undefined ? [...iAt, 'name'] : iAt, `${kind} name '${name}' is used twice in vm '${vmName}'`)
  taken.add(name)
  return name
}

function vmDisks (vmName: string, raw: unknown, at: SpecPath, report: Report): DiskSpec[] {
  const disks: DiskSpec[] = []
  const diskNames = new Set<string>()
  const rawDisks = Array.isArray(raw) ? raw : []
  rawDisks.forEach((d: unknown, i: number) => {
    if (!isObject(d)) return
    const dAt: SpecPath = [...at, 'disks', i]
    const diskName = itemName('disk', vmName, d, i, dAt, diskNames, report)
    const sizeBytes = tryParse(parseSize, d.size)
    if (sizeBytes === 0) report([...dAt, 'size'], 'must be above 0')
    disks.push({ name: diskName, sizeBytes: sizeBytes ?? 0 })
  })
  return disks
}

function vmNics (vmName: string, raw: unknown, at: SpecPath, macs: Map<string, string>, ctx: NormalizeContext): NicSpec[] {
  const { report } = ctx
  const nics: NicSpec[] = []
  const nicNames = new Set<string>()
  const rawNics: unknown[] = raw === undefined ? [{}] : Array.isArray(raw) ? raw : []
  rawNics.forEach((n: unknown, i: number) => {
    if (!isObject(n)) return
    const nAt: SpecPath = [...at, 'nics', i]
    const nicName = itemName('nic', vmName, n, i, nAt, nicNames, report)
    const nic: NicSpec = { name: nicName }
    const c = typeof n.address === 'string' ? parseCidr(n.address) : undefined
    if (c !== undefined) {
      const aAt: SpecPath = [...nAt, 'address']
      if (c.prefix <= 30 && (c.address === networkOf(c) || c.address === broadcastOf(c))) {
        report(aAt, `${formatIpv4(c.address)} is the ${c.address === networkOf(c) ? 'network' : 'broadcast'} address of ${formatIpv4(networkOf(c))}/${c.prefix}`)
      } else if (ctx.claim(c.address, `vm '${vmName}' (nic ${nicName})`, aAt)) {
        nic.address = formatCidr(c)
      }
    }
    if (typeof n.mac === 'string' && checkValue('mac', n.mac) === undefined) {
      const mac = n.mac.toLowerCase()
      const other = macs.get(mac)
      if (other !== undefined) report([...nAt, 'mac'], `MAC address ${mac} is already used by ${other}`)
      else macs.set(mac, `vm '${vmName}' (nic ${nicName})`)
      nic.mac = mac
    }
    nics.push(nic)
  })
  return nics
}

function vmFirewall (vmName: string, raw: object, nics: NicSpec[], at: SpecPath, report: Report): NonNullable<VmSpec['firewall']> {
  const fw = raw as { between?: unknown, allow?: unknown, drop?: unknown, default?: unknown }
  const between = Array.isArray(fw.between) ? fw.between.map(String) : []
  const names = nics.map(n => n.name)
  between.forEach((b, i) => { if (!names.includes(b)) report([...at, 'firewall', 'between', i], `'${b}' is not a NIC of ${vmName} (${names.join(', ') || 'it has none'})`) })
  if (between.length === 2 && between[0] === between[1]) report([...at, 'firewall', 'between'], 'the firewall needs two different NICs')
  const list = (x: unknown): string[] => Array.isArray(x) ? x.map(String) : []
  const firewall: NonNullable<VmSpec['firewall']> = { between: [between[0] ?? '', between[1] ?? ''], allow: list(fw.allow), drop: list(fw.drop), default: fw.default === 'allow' ? 'allow' : 'drop' }
  for (const [k, rules] of [['allow', firewall.allow], ['drop', firewall.drop]] as const) {
    rules.forEach((m, i) => { if (!isL2fwMatch(m)) report([...at, 'firewall', k, i], `'${m}' is not a firewall match (e.g. arp, icmp, udp:7, tcp:80-90, vlan:10+ipv4)`) })
  }
  return firewall
}
