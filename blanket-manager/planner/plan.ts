/**
 * The planner: from the wanted spec and the recorded (plus observed) state, the list of
 * actions that makes reality match the spec, and what they mean (changes.ts: create, update,
 * move, replace, delete, and the data each destroys). Pure: no I/O. Running `up` on an
 * unchanged spec against a healthy supercloud yields an empty plan. A VM's edit keeps its
 * disks where it can (vm-plan.ts); an unreachable host is left alone unless `repair`.
 */
import type { HostSpec, Spec } from '../../core/spec.ts'
import type { StateSnapshot, VmRow } from '../state/store.ts'
import { hostDataLoss, vmDataLoss, type Change } from './changes.ts'
import { resolveVms, type ResolvedVm } from './placement.ts'
import { planVm, rowData, type HostFate, type VmAction } from './vm-plan.ts'
import { hashHost, stableHash } from '../specfile/hash.ts'

/** The steps `up` applies (the mechanics; `changes` says what they mean to the user). */
export type Action =
  | { kind: 'network.create', driver: string, specHash: string, reason: string }
  | { kind: 'network.delete', driver: string, reason: string }
  | { kind: 'host.create', host: HostSpec, specHash: string, reason: string }
  | { kind: 'host.delete', name: string, reason: string }
  | { kind: 'wires.sync', wires: number, wiringHash: string, reason: string }
  | VmAction

/** What the controller saw on the hosts just before planning (optional: planning works from state alone). */
export interface Observation {
  /** Host name -> health as its driver and agent report it. */
  hosts: Record<string, 'running' | 'gone' | 'unreachable'>
  /** VM name -> run state reported by its host's agent ('running', 'absent', ...). */
  vms: Record<string, string>
  /** Host name -> build id of the agent answering there. */
  agentBuilds?: Record<string, string>
  /** Build id of the agent this controller ships; hosts running another one are upgraded. */
  wantedAgentBuild?: string
  /** VirtualWire: hash of the wiring last applied, and whether hosts' endpoints drifted from it. */
  wiringApplied?: string
  wiringDrift?: boolean
}

/** Hash of everything the VirtualWire topology depends on (wires, where components run, hosts). */
export function wiringHash (spec: Spec, wires: Spec['network']['wires'], resolved: Record<string, ResolvedVm>): string {
  return stableHash({ wires, switches: spec.network.switches, extenders: spec.network.extenders, port: spec.network.port, placement: Object.fromEntries(Object.values(resolved).map(r => [r.spec.name, r.host])), hosts: Object.keys(spec.hosts).sort() })
}

export interface Plan {
  actions: Action[]
  /** The actions as create / update / move / replace / delete, with the data each destroys. */
  changes: Change[]
  /** What the plan would do but holds back, and why (shown as `!` lines); nothing here is applied. */
  held?: string[]
  /** Resolved VMs of the wanted spec (placement, addresses), for display and apply. */
  resolved: Record<string, ResolvedVm>
}

/** Drivers that own a shared network (sites, WAN) besides their hosts. */
const NETWORK_DRIVERS = new Set<string>(['local'])

export function networkHash (spec: Spec, driver: string): string {
  const sites = Object.values(spec.sites).filter(s => s.subnet !== undefined).sort((a, b) => a.name.localeCompare(b.name))
  return stableHash({ driver, sites, wan: spec.wan })
}

export function hostHash (host: HostSpec): string {
  return hashHost(host)
}

/** A VM's hash covers everything but its allocated memory (which changes in place through the balloon). */
export function vmHash (vm: ResolvedVm): string {
  const { memory, ...rest } = vm.spec
  return stableHash({ spec: { ...rest, memory: { requestedBytes: memory.requestedBytes } }, host: vm.host, nics: vm.nics, gateway: vm.gateway })
}

/** What `up` may do beyond the spec's wish. */
export interface PlanOptions {
  /** `--repair`: re-create unreachable hosts (losing their guests' data) instead of leaving them alone. */
  repair?: boolean
  /** `--replace vm/NAME`: VMs to replace (destroy and re-create) though they could be kept. */
  replace?: string[]
}

export function plan (spec: Spec, state: StateSnapshot, prefix: string, observed?: Observation, wires: Spec['network']['wires'] = spec.network.wires, opts: PlanOptions = {}): Plan {
  const resolved = resolveVms(spec, prefix, keptNics(state))
  const changes: Change[] = []
  const held: string[] = []
  const fates = new Map<string, HostFate>()
  const fate = (h: string): HostFate => fates.get(h) ?? 'new'
  // Rows by name and by host: looked up once per host and VM (a search per item would grow with the square of the VMs).
  const hostRows = new Map(state.hosts.map(h => [h.name, h]))
  const vmRows = new Map(state.vms.map(v => [v.name, v]))
  const vmsOn = new Map<string, VmRow[]>()
  for (const v of state.vms) { const list = vmsOn.get(v.host); if (list === undefined) vmsOn.set(v.host, [v]); else list.push(v) }
  const liveVms = (host: string): VmRow[] => (vmsOn.get(host) ?? []).filter(v => v.status !== 'migrating')
  const hostLoss = (host: string, vms = liveVms(host)): string[] => hostDataLoss(host, vms.map(v => rowData(spec, v)))

  // Hosts to (re)create.
  const hostDeletes: Action[] = []
  const createHosts: Action[] = []
  for (const host of Object.values(spec.hosts).sort((a, b) => a.name.localeCompare(b.name))) {
    const row = hostRows.get(host.name)
    const h = hostHash(host)
    const health = observed?.hosts[host.name]
    const create = (reason: string): void => { createHosts.push({ kind: 'host.create', host, specHash: h, reason }) }
    const change = (op: Change['op'], reason: string, destroysData?: string[]): void => {
      changes.push({ op, subject: `host ${host.name}`, detail: `[${host.driver}, site ${host.site}]`, reason, ...(destroysData !== undefined && destroysData.length > 0 ? { destroysData } : {}) })
    }
    if (row === undefined) {
      fates.set(host.name, 'new'); create('new host'); change('create', 'new host')
    } else if (row.specHash !== h || row.driver !== host.driver) {
      fates.set(host.name, 'replaced')
      hostDeletes.push({ kind: 'host.delete', name: host.name, reason: 'spec changed: replacing host' })
      create('spec changed'); change('replace', 'spec changed: replacing host', hostLoss(host.name))
    } else if (row.status !== 'ready' || !row.bootstrapped) {
      const reason = `finishing interrupted ${row.status === 'destroying' ? 'removal' : 'creation'}`
      fates.set(host.name, 'finishing'); create(reason); change(row.status === 'creating' ? 'create' : 'update', reason)
    } else if (health === 'gone') {
      fates.set(host.name, 'gone'); create('host is gone: repairing'); change('replace', 'host is gone: repairing (its guests and disks went with it)')
    } else if (health === 'unreachable' && opts.repair !== true) {
      fates.set(host.name, 'held')
      const lost = hostLoss(host.name)
      held.push(`host ${host.name} is unreachable: left alone with its guests; \`up --repair\` re-creates it${lost.length > 0 ? `, losing ${lost.join('; ')}` : ''}`)
    } else if (health === 'unreachable') {
      fates.set(host.name, 'replaced'); create('host is unreachable: repairing (--repair)'); change('replace', 'host is unreachable: repairing (--repair)', hostLoss(host.name))
    } else if (observed?.wantedAgentBuild !== undefined && observed.agentBuilds?.[host.name] !== undefined && observed.agentBuilds[host.name] !== observed.wantedAgentBuild) {
      fates.set(host.name, 'kept')
      // Guests outlive the agent, so an upgrade touches no VM; except on a Xen host, where the
      // swap disks of running guests are NBD devices on the agent's export, which a restart breaks.
      const swappers = host.hypervisor.backend === 'xen'
        ? (vmsOn.get(host.name) ?? []).filter(v => spec.vms[v.name]?.swapBytes !== undefined).map(v => v.name).sort()
        : []
      if (swappers.length > 0) {
        held.push(`host ${host.name}: agent upgrade ${observed.agentBuilds[host.name] ?? ''} -> ${observed.wantedAgentBuild} held back: an agent restart would break the swap disks of ${swappers.join(', ')} on this Xen host (docs/xen.md); remove or move them first`)
        continue
      }
      const reason = `upgrading host agent ${observed.agentBuilds[host.name] ?? ''} -> ${observed.wantedAgentBuild}`
      create(reason); change('update', reason)
    } else {
      fates.set(host.name, 'kept')
    }
  }
  const removedHosts = state.hosts.filter(row => spec.hosts[row.name] === undefined)
  for (const row of removedHosts) {
    const health = observed?.hosts[row.name]
    fates.set(row.name, health === undefined || health === 'running' ? 'removed' : 'removed-dead')
  }

  // VMs.
  const vmActions: VmAction[] = []
  const forced = new Set(opts.replace ?? [])
  for (const vm of Object.values(resolved)) {
    const row = vmRows.get(vm.spec.name)
    const h = vmHash(vm)
    if (row?.status === 'migrating') continue // `supercloud migrate` owns it until it finishes or rolls back
    if (row === undefined) {
      vmActions.push({ kind: 'vm.create', vm, specHash: h, reason: 'new VM' })
      changes.push({ op: 'create', subject: `vm ${vm.spec.name}`, detail: `on ${vm.host} [${vm.nics.map(n => n.address).join(', ')}]`, reason: 'new VM' })
      continue
    }
    const run = observed?.vms[vm.spec.name]
    const r = planVm({ spec, row, vm, specHash: h, fate, forceReplace: forced.has(vm.spec.name), hashOf: vmHash, accelOf: host => state.hosts.find(x => x.name === host)?.accel, ...(run !== undefined ? { run } : {}) })
    vmActions.push(...r.actions)
    changes.push(...r.changes)
    if (r.held !== undefined) held.push(r.held)
  }
  const movedOff = new Set(vmActions.filter(a => a.kind === 'vm.move').map(a => a.name))
  for (const row of state.vms) {
    if (spec.vms[row.name] !== undefined) continue
    if (fate(row.host) === 'held') { held.push(`vm ${row.name}: not in the spec, but left alone (host ${row.host} is unreachable)`); continue }
    const reason = 'not in spec'
    vmActions.push({ kind: 'vm.delete', name: row.name, host: row.host, reason })
    changes.push({ op: 'delete', subject: `vm ${row.name}`, detail: `on ${row.host}`, reason, ...destroys(vmDataLoss(rowData(spec, row))) })
  }
  for (const row of removedHosts) {
    const reason = 'not in spec'
    hostDeletes.push({ kind: 'host.delete', name: row.name, reason })
    changes.push({ op: 'delete', subject: `host ${row.name}`, detail: '', reason, ...destroys(hostLoss(row.name, liveVms(row.name).filter(v => !movedOff.has(v.name)))) })
  }

  // Networks.
  const wantedDrivers = new Set<string>(Object.values(spec.hosts).map(h => h.driver).filter(d => NETWORK_DRIVERS.has(d)))
  const netCreates: Action[] = []
  for (const d of [...wantedDrivers].sort()) {
    const row = state.networks.find(n => n.driver === d)
    const h = networkHash(spec, d)
    const reason = row === undefined ? 'new network' : row.specHash !== h ? 'sites or WAN changed' : row.status !== 'ready' ? 'finishing interrupted creation' : undefined
    if (reason === undefined) continue
    netCreates.push({ kind: 'network.create', driver: d, specHash: h, reason })
    changes.unshift({ op: row === undefined ? 'create' : 'update', subject: `network ${d}`, detail: '', reason })
  }
  const netDeletes: Action[] = state.networks
    .filter(n => !wantedDrivers.has(n.driver))
    .map(n => ({ kind: 'network.delete' as const, driver: n.driver, reason: 'no hosts of this driver left' }))
  for (const n of netDeletes) if (n.kind === 'network.delete') changes.push({ op: 'delete', subject: `network ${n.driver}`, detail: '', reason: n.reason })

  // VirtualWire: endpoints follow wires and placement; re-synced when either changed or drifted.
  const wiring: Action[] = []
  const wh = wiringHash(spec, wires, resolved)
  const hadWires = observed?.wiringApplied !== undefined && observed.wiringApplied !== ''
  if ((wires.length > 0 || hadWires) && (observed?.wiringApplied !== wh || observed.wiringDrift === true)) {
    const reason = observed?.wiringDrift === true ? 'endpoints drifted on a host' : 'wires or placement changed'
    wiring.push({ kind: 'wires.sync', wires: wires.length, wiringHash: wh, reason })
    changes.push({ op: 'update', subject: 'virtualwire', detail: `${wires.length} wire${wires.length === 1 ? '' : 's'}`, reason })
  }

  const vmDeletes = vmActions.filter(a => a.kind === 'vm.delete')
  const vmRest = vmActions.filter(a => a.kind !== 'vm.delete')
  const actions: Action[] = [...vmDeletes, ...hostDeletes, ...netDeletes, ...netCreates, ...createHosts, ...wiring, ...vmRest]
  return { actions, changes, resolved, ...(held.length > 0 ? { held } : {}) }
}

/** The NICs the state's VMs run with (their allocated addresses stay theirs). */
export function keptNics (state: Pick<StateSnapshot, 'vms'>): Record<string, Array<{ name: string, address: string }>> {
  return Object.fromEntries(state.vms.filter(v => v.record !== undefined).map(v => [v.name, v.record?.nics ?? []]))
}

function destroys (items: string[]): { destroysData?: string[] } {
  return items.length > 0 ? { destroysData: items } : {}
}

