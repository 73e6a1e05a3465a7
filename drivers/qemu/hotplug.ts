/**
 * Pure: what QEMU can change in a running guest (hot-plug), the command-line headroom that makes
 * it possible, and the QMP commands that do it. No I/O here (backend.ts runs the commands).
 *
 * Headroom every guest is launched with (args.ts):
 *   vCPUs   `-smp <boot>,sockets=1,cores=<max>,threads=1,maxcpus=<max>`: max = max(8, boot);
 *           vCPUs above the boot count are `<model>-x86_64-cpu` devices with id cpu<k>, core-id k.
 *   memory  `-m <boot>,slots=8,maxmem=<boot + 4 GiB>`: memory above the boot size is pc-dimm
 *           devices (id dimm<i>, backend mem-dimm<i>) in steps of 128 MiB (the guest's memory
 *           block size), onlined by the guest kernel (`memhp_default_state=online`).
 *           Memory is not unplugged: a guest can hold unmovable pages in any DIMM. Shrinking
 *           live is the balloon's job (a VM's `allocated` memory); a smaller `memory` is a restart.
 *   PCI     q35's root bus takes no hot-plug: 4 empty PCIe root ports (id hp<i>, at fixed slots
 *           0x10.. so the layout is the same whatever else the guest has) take hot-plugged disks
 *           and NICs. Disks and NICs plugged at boot sit on the root bus and are not unplugged live.
 * What was hot-plugged is kept in GuestDefinition.plugged, so a migration's destination (and
 * the agent's record) starts the guest with the same devices in the same places.
 */
import type { GuestDefinition, GuestDisk, GuestNic, GuestPlugged } from '../hypervisor.ts'

const MiB = 1024 * 1024
export const HOTPLUG_MIN_MAX_CPUS = 8
export const DIMM_SLOTS = 8
export const DIMM_STEP_BYTES = 128 * MiB
export const HOTPLUG_MEMORY_BYTES = 4096 * MiB
export const HOTPLUG_PORTS = 4
/**
 * Kernel arguments a kernel-booted guest gets with the headroom: DIMMs online as they arrive, and
 * no swiotlb bounce buffer (the hot-plug range above 4 GiB would make Linux take 64 MiB of the
 * guest's RAM for one; virtio devices do not bounce). A disk-booted guest's own kernel decides both.
 */
export const HOTPLUG_KERNEL_ARGS = 'memhp_default_state=online swiotlb=noforce'
/** Slot of the first hot-plug root port on pcie.0 (devices without an address take slots from 1 up). */
export const HOTPLUG_PORT_SLOT = 0x10

/** Sizes and devices of a guest, as far as a live update is concerned. */
export interface LiveShape {
  cpus: number
  memoryBytes: number
  /** Device ids of its data disks (and root disk), in order. */
  disks: string[]
  /** Device ids of its NICs, in order. */
  nics: string[]
  plugged?: GuestPlugged
}

export function shapeOf (def: GuestDefinition): LiveShape {
  return { cpus: def.cpus, memoryBytes: def.memoryBytes, disks: def.disks.map(d => d.id), nics: def.nics.map(n => n.id), ...(def.plugged !== undefined ? { plugged: def.plugged } : {}) }
}

/** The plugged layout of a guest that was cold-booted as it is (nothing hot-plugged). */
export function coldPlugged (cpus: number, memoryBytes: number): GuestPlugged {
  return { bootCpus: cpus, bootMemoryBytes: memoryBytes, dimmBytes: [], ports: {} }
}

function plugged (s: Pick<LiveShape, 'cpus' | 'memoryBytes' | 'plugged'>): GuestPlugged {
  return s.plugged ?? coldPlugged(s.cpus, s.memoryBytes)
}

/** The most vCPUs a guest booted with `bootCpus` can have. */
export function maxCpus (bootCpus: number): number {
  return Math.max(HOTPLUG_MIN_MAX_CPUS, bootCpus)
}

/** The most memory a guest booted with `bootMemoryBytes` can have. */
export function maxMemory (bootMemoryBytes: number): number {
  return bootMemoryBytes + HOTPLUG_MEMORY_BYTES
}

const mib = (n: number): string => `${n / MiB} MiB`

/** Why `from` cannot become `to` live (empty: it can, with liveSteps). */
export function liveRefusals (from: LiveShape, to: LiveShape): string[] {
  const p = plugged(from)
  const out: string[] = []
  if (to.cpus < from.cpus) out.push(`cpus ${from.cpus} -> ${to.cpus}: vCPUs are not unplugged live`)
  else if (to.cpus > maxCpus(p.bootCpus)) out.push(`cpus ${from.cpus} -> ${to.cpus}: over the ${maxCpus(p.bootCpus)} vCPUs the guest was launched with room for`)
  const grow = to.memoryBytes - from.memoryBytes
  if (grow < 0) out.push(`memory ${mib(from.memoryBytes)} -> ${mib(to.memoryBytes)}: memory is not unplugged live (lower \`allocated\` to shrink it through the balloon)`)
  else if (grow > 0 && grow % DIMM_STEP_BYTES !== 0) out.push(`memory ${mib(from.memoryBytes)} -> ${mib(to.memoryBytes)}: grows live only in steps of ${mib(DIMM_STEP_BYTES)}`)
  else if (grow > 0 && p.dimmBytes.length >= DIMM_SLOTS) out.push(`memory ${mib(from.memoryBytes)} -> ${mib(to.memoryBytes)}: all ${DIMM_SLOTS} memory slots are used`)
  else if (to.memoryBytes > maxMemory(p.bootMemoryBytes)) out.push(`memory ${mib(from.memoryBytes)} -> ${mib(to.memoryBytes)}: over the ${mib(maxMemory(p.bootMemoryBytes))} the guest was launched with room for`)
  for (const [kind, was, now] of [['disk', from.disks, to.disks], ['NIC', from.nics, to.nics]] as const) {
    for (const id of was) if (!now.includes(id) && p.ports[id] === undefined) out.push(`${kind} ${id} removed: it was plugged at boot (q35's root bus takes no hot-unplug)`)
    const kept = now.filter(id => was.includes(id))
    if (kept.join(',') !== was.filter(id => now.includes(id)).join(',')) out.push(`${kind}s reordered`)
  }
  const added = [...to.disks.filter(id => !from.disks.includes(id)), ...to.nics.filter(id => !from.nics.includes(id))]
  const removed = [...from.disks.filter(id => !to.disks.includes(id)), ...from.nics.filter(id => !to.nics.includes(id))]
  const freePorts = HOTPLUG_PORTS - Object.keys(p.ports).length + removed.filter(id => p.ports[id] !== undefined).length
  if (added.length > freePorts) out.push(`${added.length} disk(s)/NIC(s) added: ${freePorts} hot-plug port(s) free`)
  return out
}

/** One QMP command of a live update; `awaitDeleted`: wait for DEVICE_DELETED of that device id after it. */
export interface QmpStep {
  execute: string
  arguments: Record<string, unknown>
  awaitDeleted?: string
}

/** QEMU's hot-pluggable vCPU type for the `-cpu` model ('max' -> 'max-x86_64-cpu'). */
export function cpuDeviceType (model: string): string {
  return `${model}-x86_64-cpu`
}

export function cpuDevice (model: string, index: number): Record<string, unknown> {
  return { driver: cpuDeviceType(model), id: `cpu${index}`, 'socket-id': 0, 'core-id': index, 'thread-id': 0 }
}

export function dimmObject (index: number, bytes: number): Record<string, unknown> {
  return { 'qom-type': 'memory-backend-ram', id: `mem-dimm${index}`, size: bytes }
}

export function dimmDevice (index: number): Record<string, unknown> {
  return { driver: 'pc-dimm', id: `dimm${index}`, memdev: `mem-dimm${index}` }
}

export function diskBlockdev (d: GuestDisk): Record<string, unknown> {
  return { driver: d.format, 'node-name': `drv-${d.id}`, file: { driver: 'file', filename: d.path } }
}

export function diskDevice (d: GuestDisk, port?: number): Record<string, unknown> {
  return { driver: 'virtio-blk-pci', drive: `drv-${d.id}`, id: d.id, ...(port !== undefined ? { bus: `hp${port}` } : {}) }
}

export function nicNetdev (n: GuestNic): Record<string, unknown> {
  return { type: 'tap', id: `net-${n.id}`, ifname: n.tap, script: 'no', downscript: 'no' }
}

export function nicDevice (n: GuestNic, port?: number): Record<string, unknown> {
  return { driver: 'virtio-net-pci', netdev: `net-${n.id}`, id: n.id, mac: n.mac.toLowerCase(), ...(n.mtu !== undefined ? { host_mtu: n.mtu } : {}), ...(port !== undefined ? { bus: `hp${port}` } : {}) }
}

/**
 * The QMP commands that change the running `from` into `to`, and `to`'s plugged layout. Order:
 * unplugs first (their ports free up), then vCPUs, memory, disks, NICs. Throws
 * LiveUpdateRefused (with liveRefusals' reasons) when it cannot be done live.
 */
export function liveSteps (from: GuestDefinition, to: GuestDefinition, cpuModel: string): { steps: QmpStep[], plugged: GuestPlugged } {
  const why = liveRefusals(shapeOf(from), shapeOf(to))
  if (why.length > 0) throw new LiveUpdateRefused(why)
  const was = plugged(from)
  const p: GuestPlugged = { bootCpus: was.bootCpus, bootMemoryBytes: was.bootMemoryBytes, dimmBytes: [...was.dimmBytes], ports: { ...was.ports } }
  const steps: QmpStep[] = []
  for (const d of from.disks) {
    if (to.disks.some(x => x.id === d.id)) continue
    steps.push({ execute: 'device_del', arguments: { id: d.id }, awaitDeleted: d.id }, { execute: 'blockdev-del', arguments: { 'node-name': `drv-${d.id}` } })
    delete p.ports[d.id] // eslint-disable-line @typescript-eslint/no-dynamic-delete
  }
  for (const n of from.nics) {
    if (to.nics.some(x => x.id === n.id)) continue
    steps.push({ execute: 'device_del', arguments: { id: n.id }, awaitDeleted: n.id }, { execute: 'netdev_del', arguments: { id: `net-${n.id}` } })
    delete p.ports[n.id] // eslint-disable-line @typescript-eslint/no-dynamic-delete
  }
  for (let k = from.cpus; k < to.cpus; k++) steps.push({ execute: 'device_add', arguments: cpuDevice(cpuModel, k) })
  const grow = to.memoryBytes - from.memoryBytes
  if (grow > 0) {
    const i = p.dimmBytes.length
    steps.push({ execute: 'object-add', arguments: dimmObject(i, grow) }, { execute: 'device_add', arguments: dimmDevice(i) })
    p.dimmBytes.push(grow)
  }
  const freePort = (): number => {
    const used = new Set(Object.values(p.ports))
    for (let i = 0; i < HOTPLUG_PORTS; i++) if (!used.has(i)) return i
    throw new LiveUpdateRefused(['no hot-plug port free']) // liveRefusals counted them: not reached
  }
  for (const d of to.disks) {
    if (from.disks.some(x => x.id === d.id)) continue
    const port = freePort()
    p.ports[d.id] = port
    steps.push({ execute: 'blockdev-add', arguments: diskBlockdev(d) }, { execute: 'device_add', arguments: diskDevice(d, port) })
  }
  for (const n of to.nics) {
    if (from.nics.some(x => x.id === n.id)) continue
    const port = freePort()
    p.ports[n.id] = port
    steps.push({ execute: 'netdev_add', arguments: nicNetdev(n) }, { execute: 'device_add', arguments: nicDevice(n, port) })
  }
  return { steps, plugged: p }
}

/** An edit QEMU cannot make to the running guest; nothing was changed. */
export class LiveUpdateRefused extends Error {
  constructor (readonly reasons: string[]) {
    super(`cannot change the running guest live: ${reasons.join('; ')}`)
    this.name = 'LiveUpdateRefused'
  }
}

/** Boot sizes of a definition (what `-smp` and `-m` say). */
export function bootSizes (def: GuestDefinition): { cpus: number, memoryBytes: number } {
  return def.plugged !== undefined ? { cpus: def.plugged.bootCpus, memoryBytes: def.plugged.bootMemoryBytes } : { cpus: def.cpus, memoryBytes: def.memoryBytes }
}

/** Checks that `def.plugged` adds up to `def`'s sizes (else the layout and the sizes disagree). */
export function pluggedProblem (def: GuestDefinition): string | undefined {
  const p = def.plugged
  if (p === undefined) return undefined
  if (!Number.isSafeInteger(p.bootCpus) || p.bootCpus < 1 || p.bootCpus > def.cpus || def.cpus > maxCpus(p.bootCpus)) return `plugged: boot cpus ${p.bootCpus} do not fit cpus ${def.cpus}`
  const sum = p.bootMemoryBytes + p.dimmBytes.reduce((a, b) => a + b, 0)
  if (sum !== def.memoryBytes || p.dimmBytes.some(b => b <= 0 || b % DIMM_STEP_BYTES !== 0) || p.dimmBytes.length > DIMM_SLOTS) return `plugged: boot memory ${p.bootMemoryBytes} plus DIMMs ${p.dimmBytes.join('+')} is not memory ${def.memoryBytes}`
  const ids = new Set([...def.disks.map(d => d.id), ...def.nics.map(n => n.id)])
  for (const [id, port] of Object.entries(p.ports)) {
    if (!ids.has(id)) return `plugged: port of unknown device ${id}`
    if (!Number.isSafeInteger(port) || port < 0 || port >= HOTPLUG_PORTS) return `plugged: device ${id} on port ${port} (0..${HOTPLUG_PORTS - 1})`
  }
  if (new Set(Object.values(p.ports)).size !== Object.keys(p.ports).length) return 'plugged: two devices on one port'
  return undefined
}

/** Command-line headroom and plugged devices (args.ts): -smp value, -m value, and extra args. */
export function hotplugArgs (def: GuestDefinition, cpuModel: string, memoryArg: (bytes: number) => string): { smp: string, m: string, extra: string[] } {
  const boot = bootSizes(def)
  const max = maxCpus(boot.cpus)
  const extra: string[] = []
  for (let i = 0; i < HOTPLUG_PORTS; i++) {
    extra.push('-device', `pcie-root-port,id=hp${i},chassis=${i + 1},bus=pcie.0,addr=0x${(HOTPLUG_PORT_SLOT + i).toString(16)}`)
  }
  for (let k = boot.cpus; k < def.cpus; k++) extra.push('-device', optString(cpuDevice(cpuModel, k)))
  def.plugged?.dimmBytes.forEach((bytes, i) => {
    extra.push('-object', `memory-backend-ram,id=mem-dimm${i},size=${bytes}`, '-device', optString(dimmDevice(i)))
  })
  return {
    smp: `${boot.cpus},sockets=1,cores=${max},threads=1,maxcpus=${max}`,
    m: `${memoryArg(boot.memoryBytes)},slots=${DIMM_SLOTS},maxmem=${memoryArg(maxMemory(boot.memoryBytes))}`,
    extra
  }
}

/** A device's properties as `-device` text (driver first). */
function optString (o: Record<string, unknown>): string {
  const { driver, ...rest } = o
  return [String(driver), ...Object.entries(rest).map(([k, v]) => `${k}=${String(v)}`)].join(',')
}
