/**
 * Pure: the qemu-system-x86_64 command line for a GuestDefinition, and the
 * layout of a guest's run directory. No I/O here.
 *
 * Run directory layout (every path is derived from def.runDir):
 *   qemu.pid     pidfile written by QEMU (-pidfile)
 *   qmp.sock     QMP control socket (server, no wait)
 *   serial.sock  serial console ttyS0 as a raw byte stream (server, no wait; one client at a time)
 *   console.log  everything the guest wrote on ttyS0 (logged whether or not a client is attached)
 *   qemu.log     QEMU's own stdout/stderr
 */
import { join } from 'node:path'
import type { GuestDefinition } from '../hypervisor.ts'
import { GuestDefinitionError } from './errors.ts'
import { HOTPLUG_KERNEL_ARGS, hotplugArgs, pluggedProblem } from './hotplug.ts'

export interface RunPaths {
  runDir: string
  pidfile: string
  qmp: string
  /** Second QMP monitor, used only by live migration so status calls are never blocked by it. */
  qmpMigration: string
  serial: string
  consoleLog: string
  qemuLog: string
}

export function runPaths (runDir: string): RunPaths {
  return {
    runDir,
    pidfile: join(runDir, 'qemu.pid'),
    qmp: join(runDir, 'qmp.sock'),
    qmpMigration: join(runDir, 'qmp-mig.sock'),
    serial: join(runDir, 'serial.sock'),
    consoleLog: join(runDir, 'console.log'),
    qemuLog: join(runDir, 'qemu.log')
  }
}

/** Linux limits unix socket paths to 107 bytes (sun_path is 108 with the NUL). */
export const MAX_UNIX_SOCKET_PATH = 107

export interface QemuArgsOptions {
  /** Machine type; default q35. */
  machine?: 'q35' | 'pc'
  /** CPU model under TCG; default max. (Under KVM the CPU is always `host`.) */
  tcgCpu?: 'max' | 'qemu64'
}

const MiB = 1024 * 1024
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** QEMU ids / node names: a letter first, then letters, digits, '-', '.', '_'. */
const ID_RE = /^[A-Za-z][A-Za-z0-9._-]{0,26}$/
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i
const TAP_RE = /^[A-Za-z0-9_.-]{1,15}$/

/** Device id of the NBD-backed swap disk (its block node is `drv-swap0`). */
export const SWAP_ID = 'swap0'

/**
 * The guest's name for the `index`-th virtio disk (0 → /dev/vda, 25 → /dev/vdz, 26 → /dev/vdaa):
 * virtio-blk devices are plugged in command-line order, and the guest kernel names them in PCI order.
 */
export function virtioDiskName (index: number): string {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`disk index must be an integer >= 0, got ${index}`)
  let n = index
  let s = ''
  do { s = String.fromCharCode(97 + (n % 26)) + s; n = Math.floor(n / 26) - 1 } while (n >= 0)
  return `/dev/vd${s}`
}

/** Escapes a value inside QEMU's key=value,key=value option syntax (a comma is doubled). */
export function qemuOptValue (v: string): string {
  return v.replace(/,/g, ',,')
}

/** Memory size as QEMU's -m value (whole MiB). */
export function memoryMiB (def: Pick<GuestDefinition, 'name' | 'memoryBytes'>): number {
  if (!Number.isSafeInteger(def.memoryBytes) || def.memoryBytes <= 0 || def.memoryBytes % MiB !== 0) {
    throw new GuestDefinitionError(def.name, `memory must be a positive whole number of MiB, got ${def.memoryBytes} bytes`)
  }
  return def.memoryBytes / MiB
}

/**
 * Extra guest RAM under TCG (8 KiB, QEMU's RAM size granularity) so that the RAM block is not a
 * multiple of 64 pages (256 KiB).
 *
 * Why: QEMU before 9.0 (Debian 12 ships 7.2) syncs the migration dirty bitmap of a RAM block
 * whose size is a multiple of 64 pages through a fast path that clears the dirty bits without
 * re-arming TCG's TLB, so guest stores through TLB entries that were already dirty are not seen
 * again: pages written after the first sync can be left out of the migration, and the guest
 * crashes on the destination (slab corruption, "Bad rss-counter state"; QEMU commit "system/
 * physmem: Fix migration dirty bitmap coherency with TCG memory access", Feb 2024). Any other
 * size takes the page-by-page path, which re-arms the TLB for every dirty page it clears.
 * KVM tracks dirty pages in the kernel and is not affected.
 */
export const TCG_RAM_PAD_BYTES = 8192

/** The `-m` value: whole MiB, plus TCG_RAM_PAD_BYTES under TCG (see there). */
export function memoryArg (def: Pick<GuestDefinition, 'name' | 'memoryBytes' | 'accel'>): string {
  const mem = memoryMiB(def)
  return def.accel === 'tcg' ? `${mem * 1024 + TCG_RAM_PAD_BYTES / 1024}K` : String(mem)
}

/** Checks everything about a definition that QEMU would reject or misparse; throws GuestDefinitionError. */
export function validateDefinition (def: GuestDefinition): void {
  const bad = (detail: string): never => { throw new GuestDefinitionError(def.name, detail) }
  if (!NAME_RE.test(def.name)) bad(`name '${def.name}' must be 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit)`)
  if (!Number.isSafeInteger(def.cpus) || def.cpus < 1 || def.cpus > 255) bad(`cpus must be an integer 1..255, got ${def.cpus}`)
  const mem = memoryMiB(def)
  if (def.balloonTargetBytes !== undefined) {
    if (!Number.isSafeInteger(def.balloonTargetBytes) || def.balloonTargetBytes <= 0) bad(`balloon target must be a positive number of bytes, got ${def.balloonTargetBytes}`)
    if (def.balloonTargetBytes > mem * MiB) bad(`balloon target ${def.balloonTargetBytes} exceeds memory ${def.memoryBytes}`)
  }
  const plug = pluggedProblem(def)
  if (plug !== undefined) bad(plug)
  if (def.accel !== 'kvm' && def.accel !== 'tcg') bad(`accel must be kvm or tcg, got ${String(def.accel)}`)
  if (!def.runDir.startsWith('/')) bad(`runDir must be an absolute path, got '${def.runDir}'`)
  const p = runPaths(def.runDir)
  for (const sock of [p.qmp, p.serial]) {
    if (Buffer.byteLength(sock) > MAX_UNIX_SOCKET_PATH) bad(`socket path ${sock} is longer than ${MAX_UNIX_SOCKET_PATH} bytes; use a shorter runDir`)
  }
  if (def.boot.kind === 'kernel') {
    if (def.boot.kernel === '') bad('kernel boot needs a kernel path')
  } else if (def.disks.length === 0) {
    bad('disk boot needs at least one disk')
  }
  const ids = new Set<string>()
  const useId = (id: string, what: string): void => {
    if (!ID_RE.test(id)) bad(`${what} id '${id}' must start with a letter and hold at most 27 letters, digits, '.', '_' or '-'`)
    if (ids.has(id)) bad(`duplicate device id '${id}'`)
    ids.add(id)
  }
  for (const d of def.disks) {
    useId(d.id, 'disk')
    if (d.format !== 'qcow2' && d.format !== 'raw') bad(`disk ${d.id}: format must be qcow2 or raw`)
    if (!d.path.startsWith('/')) bad(`disk ${d.id}: path must be absolute, got '${d.path}'`)
  }
  if (def.swap !== undefined) {
    if (!def.swap.socketPath.startsWith('/')) bad(`swap socket path must be absolute, got '${def.swap.socketPath}'`)
    if (Buffer.byteLength(def.swap.socketPath) > MAX_UNIX_SOCKET_PATH) bad(`swap socket path ${def.swap.socketPath} is longer than ${MAX_UNIX_SOCKET_PATH} bytes`)
    useId(SWAP_ID, 'swap disk')
  }
  for (const n of def.nics) {
    useId(n.id, 'nic')
    if (!TAP_RE.test(n.tap)) bad(`nic ${n.id}: tap name '${n.tap}' must be 1-15 letters, digits, '.', '_' or '-'`)
    if (!MAC_RE.test(n.mac)) bad(`nic ${n.id}: mac '${n.mac}' is not a MAC address like 52:54:00:12:34:56`)
    if (n.mtu !== undefined && (!Number.isSafeInteger(n.mtu) || n.mtu < 68 || n.mtu > 65535)) bad(`nic ${n.id}: mtu must be 68..65535, got ${n.mtu}`)
  }
}

/**
 * The argv (without the binary) that runs `def` in the foreground; the caller
 * detaches it (setsid) so the guest survives the process that started it.
 */
export function buildQemuArgs (def: GuestDefinition, opts: QemuArgsOptions = {}): string[] {
  validateDefinition(def)
  const p = runPaths(def.runDir)
  const esc = qemuOptValue
  const machine = opts.machine ?? 'q35'
  const cpu = def.accel === 'kvm' ? 'host' : (opts.tcgCpu ?? 'max')
  // Headroom for hot-plug (vCPUs, DIMMs, PCIe ports) and what was hot-plugged: hotplug.ts.
  const hp = hotplugArgs(def, cpu, bytes => memoryArg({ ...def, memoryBytes: bytes }))
  const port = (id: string): string => def.plugged?.ports[id] !== undefined ? `,bus=hp${def.plugged.ports[id]}` : ''
  const a: string[] = [
    '-name', `guest=${esc(def.name)}`,
    '-machine', `${machine},accel=${def.accel}`,
    '-cpu', cpu,
    '-smp', hp.smp,
    '-m', hp.m,
    '-nodefaults', '-no-user-config',
    '-display', 'none',
    '-pidfile', p.pidfile,
    '-chardev', `socket,id=qmp0,path=${esc(p.qmp)},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-chardev', `socket,id=ser0,path=${esc(p.serial)},server=on,wait=off,logfile=${esc(p.consoleLog)},logappend=on`,
    '-serial', 'chardev:ser0',
    '-chardev', `socket,id=qmp1,path=${esc(p.qmpMigration)},server=on,wait=off`,
    '-mon', 'chardev=qmp1,mode=control',
    '-device', 'virtio-balloon-pci,id=balloon0',
    ...hp.extra
  ]
  def.disks.forEach((d, i) => {
    const node = `drv-${d.id}`
    a.push('-blockdev', `driver=${d.format},node-name=${node},file.driver=file,file.filename=${esc(d.path)}`)
    const bootindex = def.boot.kind === 'disk' && i === 0 ? ',bootindex=0' : ''
    a.push('-device', `virtio-blk-pci,drive=${node},id=${d.id}${bootindex}${port(d.id)}`)
  })
  if (def.swap !== undefined) {
    const blockdev = {
      driver: 'nbd',
      'node-name': `drv-${SWAP_ID}`,
      server: { type: 'unix', path: def.swap.socketPath },
      export: def.swap.exportName ?? 'swap',
      'reconnect-delay': def.swap.reconnectDelaySec ?? 30,
      // Pass the guest's discards of freed swap slots to the agent, which releases their repository pages.
      discard: 'unmap'
    }
    a.push('-blockdev', JSON.stringify(blockdev))
    a.push('-device', `virtio-blk-pci,drive=drv-${SWAP_ID},id=${SWAP_ID}`)
  }
  for (const n of def.nics) {
    const netdev = `net-${n.id}`
    a.push('-netdev', `tap,id=${netdev},ifname=${n.tap},script=no,downscript=no`)
    a.push('-device', `virtio-net-pci,netdev=${netdev},id=${n.id},mac=${n.mac.toLowerCase()}${n.mtu !== undefined ? `,host_mtu=${n.mtu}` : ''}${port(n.id)}`)
  }
  if (def.boot.kind === 'kernel') {
    a.push('-kernel', def.boot.kernel)
    if (def.boot.initrd !== undefined) a.push('-initrd', def.boot.initrd)
    // Hot-plugged DIMMs are onlined by the guest kernel itself (it has no udev to do it). The
    // hot-plug memory range lies above 4 GiB, which makes Linux set aside a 64 MiB swiotlb bounce
    // buffer for 32-bit DMA; virtio devices (no iommu_platform) never bounce: none is set aside.
    a.push('-append', `${def.boot.append} ${HOTPLUG_KERNEL_ARGS}`.trim())
  }
  if (def.incoming === true) a.push('-incoming', 'defer')
  return a
}
