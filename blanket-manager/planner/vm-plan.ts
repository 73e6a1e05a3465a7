/**
 * What the planner does with one VM of the spec that the state already knows (pure). The VM's
 * record (what was last launched) against its resolved spec decides: nothing, a balloon, a live
 * update (hot-plug where the host can: live.ts), a restart on its existing disks (cpus, memory,
 * an added or grown disk, gateway, firewall, swap, when not live: it says why),
 * a move by live migration (a changed host), a cold boot (found not running), or a replace
 * (image, NICs, a removed or shrunk disk, `--replace`, its host re-created), which says what it loses.
 */
import type { Spec, VmSpec } from '../../core/spec.ts'
import type { VmRow } from '../state/store.ts'
import { humanBytes, vmDataLoss, type Change, type VmData } from './changes.ts'
import type { ResolvedVm } from './placement.ts'
import { xenMigrationUnsupported } from './placement.ts'
import { asLaunched, liveEdit } from './live.ts'

/** What happens to a VM's host in this plan. */
export type HostFate =
  | 'kept' // ready, reachable, unchanged (maybe an agent upgrade)
  | 'new' // created by this plan
  | 'finishing' // an interrupted creation or removal finished
  | 'replaced' // destroyed and re-created (spec changed, or `--repair` of an unreachable host)
  | 'gone' // vanished (its guests and disks with it): re-created
  | 'held' // unreachable: left alone
  | 'removed' // not in the spec, reachable: deleted after its VMs moved off
  | 'removed-dead' // not in the spec and not reachable

export type VmAction =
  | { kind: 'vm.create', vm: ResolvedVm, specHash: string, reason: string }
  | { kind: 'vm.delete', name: string, host: string, reason: string }
  | { kind: 'vm.restart', vm: ResolvedVm, specHash: string, reason: string }
  /** Changed live, in place (hot-plug: live.ts); its memory's `allocated` follows through the balloon. */
  | { kind: 'vm.update', vm: ResolvedVm, specHash: string, reason: string }
  | { kind: 'vm.move', name: string, from: string, to: string, running: VmSpec, reason: string }
  | { kind: 'vm.balloon', name: string, host: string, allocatedBytes: number, specHash: string, reason: string }

export interface VmPlanInput {
  spec: Spec
  row: VmRow
  vm: ResolvedVm
  specHash: string
  fate: (host: string) => HostFate
  /** Observed run state ('running', 'absent', ...); undefined when not observed. */
  run?: string
  /** `--replace vm/NAME` asked for this VM. */
  forceReplace: boolean
  /** The hash `up` records for a resolved VM (plan.ts's vmHash). */
  hashOf: (vm: ResolvedVm) => string
  /** The hypervisor mode a host's bootstrap chose ('kvm', 'tcg', 'xen'), when known. */
  accelOf?: (host: string) => string | undefined
}

export interface VmPlan {
  actions: VmAction[]
  changes: Change[]
  held?: string
}

/** What destroying the VM of `row` loses (its disks as last launched, else as the spec says). */
export function rowData (spec: Spec, row: VmRow): VmData {
  const image = spec.images[row.record?.image ?? spec.vms[row.name]?.image ?? '']
  return { name: row.name, disks: row.record?.disks ?? spec.vms[row.name]?.disks ?? [], ...(image !== undefined ? { image } : {}) }
}

function addrs (vm: ResolvedVm): string {
  return `[${vm.nics.map(n => n.address).join(', ')}]`
}

/** Why the VM cannot keep its disks across this edit (a replace), or undefined when it can. */
function replaceReasons (row: VmRow, vm: ResolvedVm, specHash: string): string[] {
  const rec = row.record
  if (rec === undefined) return row.specHash !== specHash ? ['spec changed (no record of how it was launched)'] : []
  const out: string[] = []
  if (rec.image !== vm.spec.image) out.push(`image ${rec.image} -> ${vm.spec.image}`)
  const nic = (n: { name: string, address: string, mac: string }): string => `${n.name}=${n.address}/${n.mac}`
  if (rec.nics.map(nic).join(',') !== vm.nics.map(nic).join(',')) out.push('NICs changed')
  const now = new Map(vm.spec.disks.map(d => [d.name, d.sizeBytes]))
  for (const d of rec.disks ?? []) {
    const size = now.get(d.name)
    if (size === undefined) out.push(`disk ${d.name} removed`)
    else if (size < d.sizeBytes) out.push(`disk ${d.name} shrinks ${humanBytes(d.sizeBytes)} -> ${humanBytes(size)}`)
  }
  return out
}

/** What a restart on its disks changes (empty: nothing a restart would apply). */
function restartReasons (row: VmRow, vm: ResolvedVm, specHash: string, hostChanged: boolean): string[] {
  const rec = row.record
  if (rec === undefined) return []
  const out: string[] = []
  if (rec.cpus !== vm.spec.cpus) out.push(`cpus ${rec.cpus} -> ${vm.spec.cpus}`)
  if (rec.memory.requestedBytes !== vm.spec.memory.requestedBytes) out.push(`memory ${humanBytes(rec.memory.requestedBytes)} -> ${humanBytes(vm.spec.memory.requestedBytes)}`)
  const was = new Map((rec.disks ?? vm.spec.disks).map(d => [d.name, d.sizeBytes]))
  for (const d of vm.spec.disks) {
    const size = was.get(d.name)
    if (size === undefined) out.push(`disk ${d.name} (${humanBytes(d.sizeBytes)}) added`)
    else if (size < d.sizeBytes) out.push(`disk ${d.name} grows ${humanBytes(size)} -> ${humanBytes(d.sizeBytes)}`)
  }
  // Anything else of the hash (gateway, firewall, swap): applied at boot.
  if (out.length === 0 && !hostChanged && row.specHash !== specHash) out.push('boot settings changed')
  return out
}

/** The VM as it runs now (its launch for a move, before a restart applies the new sizes). */
function asRunning (row: VmRow, vm: ResolvedVm): VmSpec {
  const rec = row.record
  if (rec === undefined) return vm.spec
  return { ...vm.spec, cpus: rec.cpus, memory: rec.memory, disks: rec.disks ?? vm.spec.disks }
}

export function planVm (i: VmPlanInput): VmPlan {
  const { spec, row, vm, specHash } = i
  const name = vm.spec.name
  const from = row.host
  const to = vm.host
  const src = i.fate(from)
  const dst = i.fate(to)
  const subject = `vm ${name}`
  const lost = vmDataLoss(rowData(spec, row))
  if (src === 'held' || (dst === 'held' && from !== to)) {
    return { actions: [], changes: [], held: `vm ${name}: left alone (host ${src === 'held' ? from : to} is unreachable; \`up --repair\` replaces it)` }
  }
  const create: VmAction = { kind: 'vm.create', vm, specHash, reason: 'replacement' }
  const replace = (reason: string, destroys: boolean): VmPlan => {
    const actions: VmAction[] = []
    // A host that is re-created takes its guests with it; elsewhere the old copy is deleted first.
    if (from !== to || !['replaced', 'gone'].includes(src)) actions.push({ kind: 'vm.delete', name, host: from, reason })
    actions.push(create)
    const c: Change = { op: 'replace', subject, detail: `on ${to} ${addrs(vm)}`, reason }
    if (destroys && lost.length > 0) c.destroysData = lost
    return { actions, changes: [c] }
  }
  if (i.forceReplace) return replace('replacement asked (--replace)', true)
  if (src === 'gone') return replace(`host ${from} is gone: re-creating it (its disks went with the host)`, false)
  if (src === 'replaced') return replace(`host ${from} is being re-created`, true)
  if (src === 'removed-dead') return replace(`host ${from} is removed and unreachable`, true)
  const hostChanged = from !== to
  const alive = i.run === undefined || i.run === 'running' || i.run === 'paused'
  // Hot-plug where the host can (live.ts); else what could not be live says why below.
  let notLive: string[] = []
  if (!hostChanged && row.record !== undefined && row.status === 'ready' && src === 'kept' && (i.run === undefined || i.run === 'running')) {
    const le = liveEdit(spec, row.record, vm, i.hashOf(asLaunched(vm, row.record)) === row.specHash, i.accelOf?.(to))
    if (le !== undefined && 'edit' in le) {
      const reason = `${le.edit.changes.join(', ')}: live, no reboot`
      const c: Change = { op: 'update', subject, detail: `on ${to}`, reason }
      const gone = le.edit.removedDisks.map(d => `disk ${d.name} (${humanBytes(d.sizeBytes)}) of ${name}`)
      if (gone.length > 0) c.destroysData = gone
      return { actions: [{ kind: 'vm.update', vm, specHash, reason }], changes: [c] }
    }
    if (le !== undefined) notLive = le.refused
  }
  const why = replaceReasons(row, vm, specHash)
  if (why.length > 0) return replace(why.join(', '), true)

  const out: VmPlan = { actions: [], changes: [] }
  const restart = restartReasons(row, vm, specHash, hostChanged)
  if (hostChanged) {
    const kinds = new Set([spec.hosts[from]?.hypervisor.backend ?? spec.hosts[to]?.hypervisor.backend, spec.hosts[to]?.hypervisor.backend])
    if (kinds.size > 1) return replace(`moving ${from} -> ${to} across hypervisors (no live migration between them)`, true)
    const nox = spec.hosts[to]?.hypervisor.backend === 'xen' ? xenMigrationUnsupported(spec, vm.spec) : undefined
    if (nox !== undefined) return replace(`moving ${from} -> ${to}: ${nox}`, true)
    if (row.status !== 'ready') return replace(`moving ${from} -> ${to} while ${row.status}`, true)
    out.actions.push({ kind: 'vm.move', name, from, to, running: asRunning(row, vm), reason: 'host changed' })
    out.changes.push({ op: 'move', subject, detail: `${from} -> ${to}`, reason: 'host changed: live migration with its disks' })
  }
  if (restart.length > 0 || (!alive && !hostChanged)) {
    const reason = restart.length > 0 ? `${restart.join(', ')}: restart on its disks${notLive.length > 0 ? ` (not live: ${notLive.join('; ')})` : ''}` : `VM is ${i.run ?? '?'}: restarting on its disks`
    out.actions.push({ kind: 'vm.restart', vm, specHash, reason })
    out.changes.push({ op: 'update', subject, detail: `on ${to}`, reason, restart: true })
    return out
  }
  if (hostChanged) return out
  if (row.status !== 'ready' || src === 'finishing' || i.run === 'paused') {
    const reason = row.status !== 'ready'
      ? `finishing interrupted ${row.status === 'destroying' ? 'removal' : 'creation'}`
      : src === 'finishing' ? `host ${to} is being (re)created` : `VM is ${i.run ?? ''}: restarting`
    out.actions.push({ kind: 'vm.create', vm, specHash, reason })
    out.changes.push({ op: row.status === 'creating' ? 'create' : 'update', subject, detail: `on ${to} ${addrs(vm)}`, reason })
    return out
  }
  if (row.record !== undefined && row.record.memory.allocatedBytes !== vm.spec.memory.allocatedBytes) {
    out.actions.push({ kind: 'vm.balloon', name, host: to, allocatedBytes: vm.spec.memory.allocatedBytes, specHash, reason: 'allocated memory changed' })
    out.changes.push({ op: 'update', subject, detail: `allocated memory -> ${Math.round(vm.spec.memory.allocatedBytes / 1048576)}M`, reason: 'allocated memory changed' })
  }
  return out
}
