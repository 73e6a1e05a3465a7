/**
 * `supercloud resize VM --cpus N --memory M`: changes a running VM's size live (hot-plug, no
 * reboot) and records it, so an `up` whose spec says the same size has nothing to change. Only
 * a live change is made: what cannot be live (fewer vCPUs, less memory, a Xen host, a step QEMU
 * cannot take) is refused with the reason, and nothing changes (edit the spec and `up` restarts it).
 */
import { NotFoundError, SupercloudError } from '../../core/errors.ts'
import type { Spec, VmSpec } from '../../core/spec.ts'
import type { Plan } from '../planner/plan.ts'
import type { VmAction } from '../planner/vm-plan.ts'
import type { StateStore } from '../state/store.ts'

export interface ResizeRequest {
  cpus?: number
  memoryBytes?: number
}

export interface ResizeParts {
  store: Pick<StateStore, 'vm'>
  /** Plans `eff` (the spec as `up` applies it, with the VM resized). */
  plan: (eff: Spec) => Promise<Plan>
  /** Applies one live update. */
  update: (eff: Spec, a: Extract<VmAction, { kind: 'vm.update' }>) => Promise<void>
}

/** The VM as it runs (its recorded sizes, disks, NICs), resized as asked (pure). */
export function resized (eff: Spec, name: string, row: NonNullable<ReturnType<StateStore['vm']>>, r: ResizeRequest): VmSpec {
  const vm = eff.vms[name]
  const rec = row.record
  if (vm === undefined || rec === undefined) throw new NotFoundError('vm', name)
  const kept = new Set(rec.nics.map(n => n.name))
  const mem = rec.memory
  const requestedBytes = r.memoryBytes ?? mem.requestedBytes
  // A VM given all its memory keeps all of it; a ballooned one keeps its allocation.
  const allocatedBytes = mem.allocatedBytes >= mem.requestedBytes ? requestedBytes : Math.min(mem.allocatedBytes, requestedBytes)
  return { ...vm, cpus: r.cpus ?? rec.cpus, memory: { requestedBytes, allocatedBytes }, disks: rec.disks ?? vm.disks, nics: vm.nics.filter(n => kept.has(n.name)) }
}

/** Resizes `name` live; answers the plan line of the change. */
export async function resize (parts: ResizeParts, spec: Spec, name: string, r: ResizeRequest): Promise<string> {
  if (r.cpus === undefined && r.memoryBytes === undefined) throw new SupercloudError('SC_USAGE', 'resize needs --cpus N and/or --memory SIZE', { exitCode: 2 })
  const row = parts.store.vm(name)
  if (row?.record === undefined || spec.vms[name] === undefined) throw new NotFoundError('vm', name)
  const eff = { ...spec, vms: { ...spec.vms, [name]: resized(spec, name, row, r) } }
  const p = await parts.plan(eff)
  const mine = p.actions.filter(a => ('vm' in a && a.vm.spec.name === name) || ('name' in a && a.name === name))
  const change = p.changes.find(c => c.subject === `vm ${name}`)
  if (mine.length === 0) return `vm ${name}: already that size`
  const a = mine[0]
  if (mine.length !== 1 || a?.kind !== 'vm.update') {
    throw new SupercloudError('SC_LIVE_UPDATE_UNSUPPORTED', `vm ${name}: cannot resize live (${change?.reason ?? 'not an update in place'}); nothing was changed (edit the spec and run \`up\` to restart it at the new size)`, { exitCode: 2 })
  }
  await parts.update(eff, a)
  return `~ vm ${name} on ${a.vm.host}  (${a.reason})`
}
