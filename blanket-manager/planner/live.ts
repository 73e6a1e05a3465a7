/**
 * Which edits of a running VM are made live, in place (pure): more vCPUs, more memory, disks
 * added (or removed, when they were hot-plugged), NICs added, on a QEMU host, within the
 * headroom the guest was launched with (drivers/qemu/hotplug.ts decides that part). Anything else
 * (an image, a disk that grows, boot settings, a Xen host) is left to vm-plan.ts: a restart on
 * the VM's disks or a replace, with the reason it could not be live.
 */
import type { Spec } from '../../core/spec.ts'
import { liveRefusals, type LiveShape } from '../../drivers/qemu/hotplug.ts'
import type { VmRecord } from '../state/store.ts'
import { humanBytes } from './changes.ts'
import type { ResolvedVm } from './placement.ts'

export interface LiveEdit {
  /** What changes, for the plan line ('cpus 1 -> 2', 'disk logs (32 MiB) added'). */
  changes: string[]
  /** Disks removed with their data (the change destroys them). */
  removedDisks: Array<{ name: string, sizeBytes: number }>
}

/**
 * The VM as it was launched with the edits a live update can make taken back: when its hash
 * equals the one recorded at launch, nothing but live-able fields changed.
 */
export function asLaunched (vm: ResolvedVm, rec: VmRecord): ResolvedVm {
  const kept = new Set(rec.nics.map(n => n.name))
  return {
    ...vm,
    spec: { ...vm.spec, cpus: rec.cpus, memory: { ...vm.spec.memory, requestedBytes: rec.memory.requestedBytes }, disks: rec.disks ?? vm.spec.disks, nics: vm.spec.nics.filter(n => kept.has(n.name)) },
    nics: vm.nics.filter(n => kept.has(n.name))
  }
}

function shape (cpus: number, memoryBytes: number, disks: string[], nics: string[], plugged?: VmRecord['plugged']): LiveShape {
  return { cpus, memoryBytes, disks: disks.map(d => `disk-${d}`), nics, ...(plugged !== undefined ? { plugged } : {}) }
}

/**
 * The live edit that takes the running VM of `rec` to `vm`: undefined when there is nothing
 * live-able to change; `refused` when there is but it cannot be live (then a restart or replace).
 * `onlyLive`: nothing else of the VM changed (its hash with the live edits taken back matches).
 */
export function liveEdit (spec: Spec, rec: VmRecord, vm: ResolvedVm, onlyLive: boolean, accel?: string): { edit: LiveEdit } | { refused: string[] } | undefined {
  const recDisks = rec.disks ?? vm.spec.disks
  const changes: string[] = []
  if (rec.cpus !== vm.spec.cpus) changes.push(`cpus ${rec.cpus} -> ${vm.spec.cpus}`)
  if (rec.memory.requestedBytes !== vm.spec.memory.requestedBytes) changes.push(`memory ${humanBytes(rec.memory.requestedBytes)} -> ${humanBytes(vm.spec.memory.requestedBytes)}`)
  const removedDisks = recDisks.filter(d => !vm.spec.disks.some(x => x.name === d.name))
  for (const d of vm.spec.disks) if (!recDisks.some(x => x.name === d.name)) changes.push(`disk ${d.name} (${humanBytes(d.sizeBytes)}) added`)
  for (const d of removedDisks) changes.push(`disk ${d.name} removed`)
  const recNics = rec.nics.map(n => n.name)
  for (const n of vm.nics) if (!recNics.includes(n.name)) changes.push(`NIC ${n.name} ${n.address} added`)
  if (changes.length === 0) return undefined
  const refused: string[] = []
  if (!onlyLive) refused.push('other settings changed too')
  const backend = spec.hosts[vm.host]?.hypervisor.backend
  if (backend !== 'qemu') refused.push(`${backend ?? 'its'} host changes no running guest here (xl could set vCPUs and memory up to the domain's boot maximum: not wired up)`)
  // Under software emulation QEMU 7.2 can leave writes to a hot-plugged DIMM out of a later
  // migration (its dirty-bitmap fast path, which drivers/qemu/args.ts TCG_RAM_PAD_BYTES keeps boot
  // memory off; a DIMM's size is always a multiple of it): memory grows live only under KVM.
  if (vm.spec.memory.requestedBytes > rec.memory.requestedBytes && accel !== 'kvm') {
    refused.push(`memory is hot-plugged live only under KVM (this host runs ${accel ?? 'an unknown mode'}: QEMU 7.2 under TCG could lose writes to hot-plugged memory when the VM migrates)`)
  }
  for (const n of rec.nics) if (!vm.nics.some(x => x.name === n.name)) refused.push(`NIC ${n.name} removed`)
  for (const d of vm.spec.disks) {
    const was = recDisks.find(x => x.name === d.name)
    if (was !== undefined && was.sizeBytes !== d.sizeBytes) refused.push(`disk ${d.name} changes size`)
  }
  if (refused.length === 0) {
    refused.push(...liveRefusals(
      shape(rec.cpus, rec.memory.requestedBytes, recDisks.map(d => d.name), recNics, rec.plugged),
      shape(vm.spec.cpus, vm.spec.memory.requestedBytes, vm.spec.disks.map(d => d.name), vm.nics.map(n => n.name))
    ))
  }
  return refused.length > 0 ? { refused } : { edit: { changes, removedDisks } }
}
