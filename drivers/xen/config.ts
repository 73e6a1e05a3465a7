/**
 * Pure parts of the Xen backend: a GuestDefinition as an xl domain configuration, and
 * parsers for `xl list` / `xl list -l` / `xl info` output. No processes, no files.
 *
 * Decisions (see docs/xen.md, "The Xen backend"):
 * - Guests are PVH domains (live migration needs HAP log-dirty; Debian's Xen has no
 *   shadow paging, so PV guests cannot migrate). `tsc_mode = "native"` (TCG quirk, harmless
 *   on hardware).
 * - NICs: Xen creates the backend device itself (netback), so `GuestNic.tap` is the NAME
 *   the vif gets (xl `vifname=`), and it goes into `bridge` (the bridge the tap was in, or
 *   the backend's default bridge). The device the agent and VirtualWire know by that name
 *   is then the vif, in the same bridge.
 * - Memory: `memory = maxmem = memoryBytes`; a balloon target is applied after creation
 *   with `xl mem-set` (the same order as QEMU's backend).
 * - Console: `console=` words of the definition are replaced by `console=hvc0`; `pci=off`
 *   is added (a PVH domU has no PCI bus: see xenCmdline).
 * - Disks: raw images only, through blkback (`backendtype=phy`; the dom0's block hotplug
 *   script gives a file a loop device), as xvda, xvdb, ... in order; the Overdriver swap disk
 *   comes after them (the guest sees it as xenDiskName(disks.length)), backed by the NBD
 *   device the backend connects to the swap export and links at `<runDir>/swap.nbd`.
 */
import { SupercloudError } from '../../core/errors.ts'
import type { GuestDefinition, GuestRunState } from '../hypervisor.ts'

const MiB = 1024 * 1024

/** A GuestDefinition the Xen backend cannot express (code SC_GUEST_DEFINITION, like QEMU's). */
export class XenGuestDefinitionError extends SupercloudError {
  constructor (guest: string, detail: string) {
    super('SC_GUEST_DEFINITION', `guest ${guest}: ${detail}`, { exitCode: 2 })
  }
}

export interface XenVif {
  /** Name of the vif device in the dom0 (the definition's `tap`). */
  name: string
  mac: string
  bridge: string
  mtu?: number
}

export interface XenDomainPlan {
  name: string
  config: string
  vifs: XenVif[]
  memoryMiB: number
  /** Balloon target to set with `xl mem-set` right after creation (MiB), when below memory. */
  balloonMiB?: number
}

const NAME = /^[a-z0-9][a-z0-9-]{0,31}$/
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/

/**
 * Guest kernel command line for Xen: `console=` words replaced by console=hvc0 (first), and
 * `pci=off` unless the definition says something about pci=. A PVH domU has no PCI bus (no
 * emulated devices; Xen 4.17 passes no PCI devices to PVH domUs), but the kernel still scans
 * for one through I/O ports (early quirks, the AGP aperture check, the PCI init), and each
 * port access is a VM exit. Measured under QEMU TCG (where a VM exit costs most), the span
 * from TSC calibration to the PCI init took 9.6-17 s of a loaded guest boot with the scans,
 * 2.9 s without; on hardware it saves little, and finds nothing either way.
 */
export function xenCmdline (append: string): string {
  const words = append.split(/\s+/).filter(w => w !== '' && !w.startsWith('console='))
  return ['console=hvc0', ...words, ...(words.some(w => w.startsWith('pci=')) ? [] : ['pci=off'])].join(' ')
}

function quoted (guest: string, field: string, v: string): string {
  if (/["\\\n]/.test(v)) throw new XenGuestDefinitionError(guest, `${field} '${v}' cannot hold quotes, backslashes or newlines`)
  return `"${v}"`
}

/** An xl libxl-syntax CPUID policy ("host,xsave=0"): letters, digits and , = _ : . - only. */
function cpuidPolicy (guest: string, policy: string): string {
  if (!/^[A-Za-z0-9,=_:.-]{1,200}$/.test(policy)) throw new XenGuestDefinitionError(guest, `guest CPUID policy '${policy}' is not in xl's "host,<feature>=<0|1>,..." form`)
  return policy
}

/** The `index`-th xvd device name without /dev (0 = xvda ... 25 = xvdz). */
function xvd (index: number, prefix = 'xvd'): string {
  if (!Number.isInteger(index) || index < 0 || index > 25) throw new RangeError(`Xen disk index ${index} is out of range 0-25`)
  return `${prefix}${String.fromCharCode(97 + index)}`
}

/** The guest's device name of its `index`-th Xen disk (0 = /dev/xvda); the swap disk is xenDiskName(disks.length). */
export function xenDiskName (index: number): string {
  return `/dev/${xvd(index)}`
}

/** Where a guest's swap disk is linked to its NBD device in the dom0 (the domain config names this path). */
export function xenSwapLink (runDir: string): string {
  return `${runDir}/swap.nbd`
}

/**
 * The xl configuration for a definition. `bridgeOf(nic)` names the bridge each vif goes into.
 * Throws XenGuestDefinitionError for what Xen guests here cannot have (disk boot, qcow2
 * disks).
 */
/**
 * Where guests' vCPUs may run: every physical CPU but the first, which stays dom0's (its
 * vCPU is pinned there, `dom0_vcpus_pin`), when the host has more than one; undefined (no
 * affinity) on a single-CPU host. Keeps the control plane responsive under guest load, and on
 * Xen under QEMU TCG it is what keeps dom0 correct: with an HVM/PVH vCPU and dom0 sharing a
 * CPU, dom0 processes saw corrupted computations (docs/xen.md, "CPU placement").
 */
export function guestCpuAffinity (nrCpus: number): string | undefined {
  if (!Number.isInteger(nrCpus) || nrCpus < 2) return undefined
  return nrCpus === 2 ? '1' : `1-${nrCpus - 1}`
}

export function xenDomainPlan (def: GuestDefinition, bridgeOf: (tap: string) => string, opts: { xvdPrefix?: string, cpus?: string, cpuid?: string } = {}): XenDomainPlan {
  const g = def.name
  if (!NAME.test(g)) throw new XenGuestDefinitionError(g, `name must be 1-32 of [a-z0-9-]`)
  if (def.boot.kind !== 'kernel') throw new XenGuestDefinitionError(g, 'Xen guests boot from a kernel + initramfs (PVH); disk boot is not supported')
  if (def.swap !== undefined && !def.swap.socketPath.startsWith('/')) throw new XenGuestDefinitionError(g, `swap socket path must be absolute, got '${def.swap.socketPath}'`)
  if (def.swap !== undefined && /[,"\\\n\s]/.test(def.runDir)) throw new XenGuestDefinitionError(g, `run directory '${def.runDir}' cannot hold commas, quotes or spaces`)
  if (!Number.isSafeInteger(def.memoryBytes) || def.memoryBytes % MiB !== 0 || def.memoryBytes < 32 * MiB) {
    throw new XenGuestDefinitionError(g, `memory must be a whole number of MiB >= 32, got ${def.memoryBytes} bytes`)
  }
  if (!Number.isInteger(def.cpus) || def.cpus < 1 || def.cpus > 64) throw new XenGuestDefinitionError(g, `cpus must be 1-64, got ${def.cpus}`)
  const memoryMiB = def.memoryBytes / MiB
  let balloonMiB: number | undefined
  if (def.balloonTargetBytes !== undefined && def.incoming !== true) {
    if (!Number.isSafeInteger(def.balloonTargetBytes) || def.balloonTargetBytes <= 0) throw new XenGuestDefinitionError(g, `balloon target must be a positive number of bytes, got ${def.balloonTargetBytes}`)
    const t = Math.floor(def.balloonTargetBytes / MiB)
    if (t < memoryMiB) balloonMiB = t
  }
  const vifs: XenVif[] = def.nics.map((n, i) => {
    if (!IFNAME.test(n.tap)) throw new XenGuestDefinitionError(g, `nics[${i}].tap '${n.tap}' is not an interface name`)
    if (!MAC.test(n.mac)) throw new XenGuestDefinitionError(g, `nics[${i}].mac '${n.mac}' is not a MAC address`)
    const bridge = bridgeOf(n.tap)
    if (!IFNAME.test(bridge)) throw new XenGuestDefinitionError(g, `nics[${i}]: bridge '${bridge}' is not an interface name`)
    if (n.mtu !== undefined && (!Number.isInteger(n.mtu) || n.mtu < 576 || n.mtu > 65535)) throw new XenGuestDefinitionError(g, `nics[${i}].mtu ${n.mtu} is out of range`)
    return { name: n.tap, mac: n.mac.toLowerCase(), bridge, ...(n.mtu !== undefined ? { mtu: n.mtu } : {}) }
  })
  const prefix = opts.xvdPrefix ?? 'xvd'
  const diskLine = (index: number, target: string): string => `"format=raw,vdev=${xvd(index, prefix)},access=rw,backendtype=phy,target=${target}"`
  const disks = def.disks.map((d, i) => {
    if (d.format !== 'raw') throw new XenGuestDefinitionError(g, `disk ${d.id}: only raw disks are supported on Xen hosts (no qdisk backend in the dom0), got ${d.format}`)
    if (!d.path.startsWith('/') || /[,"\\\n\s]/.test(d.path)) throw new XenGuestDefinitionError(g, `disk ${d.id}: path '${d.path}' must be absolute without commas, quotes or spaces`)
    if (i > 25) throw new XenGuestDefinitionError(g, 'at most 26 disks')
    return diskLine(i, d.path)
  })
  if (def.swap !== undefined && def.disks.length > 25) throw new XenGuestDefinitionError(g, 'at most 25 disks with a swap disk (26 xvd devices)')
  if (def.swap !== undefined && def.incoming === true) throw new XenGuestDefinitionError(g, 'a guest with a swap disk cannot arrive by migration on a Xen host yet')
  if (def.swap !== undefined) disks.push(diskLine(def.disks.length, xenSwapLink(def.runDir)))
  const lines = [
    `name = ${quoted(g, 'name', g)}`,
    'type = "pvh"',
    `kernel = ${quoted(g, 'kernel', def.boot.kernel)}`
  ]
  if (def.boot.initrd !== undefined) lines.push(`ramdisk = ${quoted(g, 'initrd', def.boot.initrd)}`)
  lines.push(
    `cmdline = ${quoted(g, 'append', xenCmdline(def.boot.append))}`,
    `memory = ${memoryMiB}`,
    `maxmem = ${memoryMiB}`,
    `vcpus = ${def.cpus}`,
    ...(opts.cpus !== undefined ? [`cpus = ${quoted(g, 'cpus', opts.cpus)}`] : []),
    ...(opts.cpuid !== undefined ? [`cpuid = ${quoted(g, 'cpuid', cpuidPolicy(g, opts.cpuid))}`] : []),
    `vif = [${vifs.map(v => `"vifname=${v.name},bridge=${v.bridge},mac=${v.mac}${v.mtu !== undefined ? `,mtu=${v.mtu}` : ''}"`).join(', ')}]`,
    `disk = [${disks.join(', ')}]`,
    'tsc_mode = "native"',
    'on_poweroff = "destroy"',
    'on_reboot = "restart"',
    'on_crash = "preserve"'
  )
  return { name: g, config: lines.join('\n') + '\n', vifs, memoryMiB, ...(balloonMiB !== undefined ? { balloonMiB } : {}) }
}

export interface XlListRow {
  name: string
  domid: number
  /** Current memory (pages the domain holds), MiB. */
  memMiB: number
  vcpus: number
  /** xl's six state flags, e.g. "-b----". */
  flags: string
}

/** Parses `xl list [name]` (header + one row per domain). */
export function parseXlList (text: string): XlListRow[] {
  const rows: XlListRow[] = []
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-rbpscd]{6})\s/.exec(line.trim() + ' ')
    if (m === null) continue
    rows.push({ name: m[1] ?? '', domid: Number(m[2]), memMiB: Number(m[3]), vcpus: Number(m[4]), flags: m[5] ?? '' })
  }
  return rows
}

/**
 * GuestRunState from xl's six flags: r running, b blocked, p paused, s shut down, then the
 * shutdown reason (- poweroff, r reboot, s suspend, c crash, w watchdog, S soft reset), d dying.
 * Shut down for suspend (`---ss-`) is a suspended guest (the last round of a live migration, a
 * save): paused, as QEMU's backend reports a suspended VM, not shut down.
 */
export function xlState (flags: string): GuestRunState {
  if (flags[5] === 'd' || flags.includes('c')) return 'other'
  if (flags[3] === 's') return flags[4] === 's' ? 'paused' : 'shutdown'
  if (flags.includes('p')) return 'paused'
  return 'running'
}

export interface XlDomainInfo {
  domid: number
  name: string
  type: string
  maxMemKb: number
  targetMemKb: number
}

/** Parses `xl list -l <name>` (JSON array of { domid, config: { c_info, b_info } }). */
export function parseXlListLong (text: string): XlDomainInfo[] {
  let data: unknown
  try { data = JSON.parse(text) } catch { throw new SupercloudError('SC_XEN_XL', `cannot parse \`xl list -l\` output: ${text.slice(0, 200)}`) }
  if (!Array.isArray(data)) throw new SupercloudError('SC_XEN_XL', '`xl list -l` output is not a JSON array')
  return data.map((d: unknown) => {
    const o = d as { domid?: unknown, config?: { c_info?: { name?: unknown, type?: unknown }, b_info?: { max_memkb?: unknown, target_memkb?: unknown } } }
    return {
      domid: Number(o.domid),
      name: String(o.config?.c_info?.name ?? ''),
      type: String(o.config?.c_info?.type ?? ''),
      maxMemKb: Number(o.config?.b_info?.max_memkb ?? 0),
      targetMemKb: Number(o.config?.b_info?.target_memkb ?? 0)
    }
  })
}

/** `key : value` lines of `xl info`. */
export function parseXlInfo (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s*:\s?(.*)$/.exec(line)
    if (m?.[1] !== undefined) out[m[1]] = (m[2] ?? '').trim()
  }
  return out
}

/** The Xen mode `detectAccel` reports: HVM with HAP (PVH guests) or not. */
export function xenAccelReason (info: Record<string, string>): { ok: boolean, reason: string } {
  const version = `${info.xen_major ?? '?'}.${info.xen_minor ?? '?'}${info.xen_extra ?? ''}`
  const caps = info.virt_caps ?? ''
  const hvm = /\bhvm\b/.test(caps)
  const hap = /\bhap\b/.test(caps)
  return {
    ok: hvm && hap,
    reason: `Xen ${version}, virt_caps: ${caps === '' ? 'none' : caps}${hvm && hap ? ' (PVH guests with HAP)' : ' (PVH guests need hvm and hap)'}`
  }
}

/** POSIX shell quoting. */
export function shq (s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}
