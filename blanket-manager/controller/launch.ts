/** What the agent on a host needs to run a VM (used by `up` and by `migrate` for the destination). */
import { NotFoundError } from '../../core/errors.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { Spec } from '../../core/spec.ts'
import type { Topology } from '../../virtualwire/topology/compile.ts'
import type { VmLaunch } from '../agent/protocol.ts'
import { brokerSwapLaunch } from '../agent/overdriver-control.ts'
import type { GuestImageFiles } from '../bootstrap/blanket.ts'
import { VW_MTU } from '../bootstrap/endpoint-manager.ts'
import type { ResolvedVm } from '../planner/placement.ts'
import type { ControllerCore } from './components.ts'
import type { HostAgent } from './sessions.ts'

export interface LaunchInputs {
  spec: Spec
  vm: ResolvedVm
  /** The host the VM is launched on. */
  host: string
  /** The builtin guest image when the caller built it already. */
  tiny?: GuestImageFiles
  /** The VirtualWire topology whose bridges wired NICs join. */
  topo?: Topology
  progress: (ev: ProgressEvent) => void
  signal?: AbortSignal
}

/** The launch of `vm` on `host`, with its image files put on that host. */
export async function buildLaunch<A extends HostAgent> (c: ControllerCore<A>, l: LaunchInputs): Promise<VmLaunch> {
  const { spec, vm, host } = l
  c.record(host)
  const launch: VmLaunch = {
    name: vm.spec.name,
    cpus: vm.spec.cpus,
    memory: vm.spec.memory,
    image: await launchImage(c, l),
    disks: vm.spec.disks,
    nics: vm.nics.map(n => {
      const wired = l.topo?.nics[vm.spec.name]?.[n.name]
      return { name: n.name, mac: n.mac, tap: n.tap, address: n.address, ...(wired !== undefined ? { bridge: wired.bridge, mtu: VW_MTU } : {}) }
    }),
    bootTimeoutMs: c.bootTimeoutMs
  }
  if (vm.gateway !== undefined) launch.gateway = vm.gateway
  // A guest changed live runs with hot-plugged devices: a migration's destination gets the same.
  const rec = c.store.vm(vm.spec.name)?.record
  if (rec?.plugged !== undefined && rec.cpus === vm.spec.cpus && rec.memory.requestedBytes === vm.spec.memory.requestedBytes) launch.plugged = rec.plugged
  // Overdriver: a swap disk served by the host agent, with page repositories on peer hosts.
  const swap = await brokerSwapLaunch(spec, vm.spec, host, { agent: async h => await c.sessions.agent(h), address: h => c.store.host(h)?.record?.address })
  if (swap !== undefined) launch.swap = swap
  const fw = vm.spec.firewall
  if (fw !== undefined) {
    // Spec NIC names -> the guest's interface names (NICs appear as eth0, eth1... in order).
    const ifname = (nic: string): string => `eth${Math.max(0, vm.spec.nics.findIndex(n => n.name === nic))}`
    launch.firewall = {
      between: [ifname(fw.between[0]), ifname(fw.between[1])],
      rules: [...fw.drop.map(match => ({ action: 'drop' as const, match })), ...fw.allow.map(match => ({ action: 'allow' as const, match }))],
      default: fw.default
    }
  }
  return launch
}

/** The VM's image, its files put on the host. */
async function launchImage<A extends HostAgent> (c: ControllerCore<A>, l: LaunchInputs): Promise<VmLaunch['image']> {
  const img = l.spec.images[l.vm.spec.image]
  if (img === undefined) throw new NotFoundError('image', l.vm.spec.image)
  const opts = { onProgress: l.progress, ...(l.signal !== undefined ? { signal: l.signal } : {}) }
  if (img.kind === 'builtin') {
    const t = l.tiny ?? await c.images.tiny(opts)
    // Every host boots the uncompressed kernel (PVH entry) when the image has it, sent gzip'ed and
    // unpacked on the host. QEMU enters it without the kernel's self-decompression; Xen's domain
    // builder loads it as it is: xl create in a TCG dom0 took 2 s for the ELF, 5-6 s for it
    // gzip'ed and 14-18 s for the bzImage (xz inside), per guest start.
    if (t.pvh !== undefined) {
      const f = await c.images.place(l.host, t.id, { 'vmlinux.gz': t.pvh.gz, 'initrd.img': t.initrd }, opts)
      return { kind: 'kernel', kernel: f.vmlinux ?? '', initrd: f['initrd.img'] ?? '', readyMarker: 'SUPERCLOUD-GUEST-READY' }
    }
    const f = await c.images.place(l.host, t.id, { vmlinuz: t.kernel, 'initrd.img': t.initrd }, opts)
    return { kind: 'kernel', kernel: f.vmlinuz ?? '', initrd: f['initrd.img'] ?? '', readyMarker: 'SUPERCLOUD-GUEST-READY' }
  }
  if (img.kind === 'kernel') {
    const files: Record<string, string> = { vmlinuz: img.kernel }
    if (img.initrd !== undefined) files['initrd.img'] = img.initrd
    const f = await c.images.place(l.host, `user-${img.name}`, files, opts)
    return { kind: 'kernel', kernel: f.vmlinuz ?? '', ...(f['initrd.img'] !== undefined ? { initrd: f['initrd.img'] } : {}), ...(img.append !== undefined ? { append: img.append } : {}) }
  }
  const f = await c.images.place(l.host, `user-${img.name}`, { 'disk.qcow2': img.path }, opts)
  return { kind: 'qcow2', path: f['disk.qcow2'] ?? '' }
}
