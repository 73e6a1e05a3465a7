/**
 * The planner: from the wanted spec and the recorded (plus observed) state, the list of
 * actions that makes reality match the spec. Pure: no I/O. Running `up` on an unchanged
 * spec against a healthy supercloud yields an empty plan.
 */
import type { HostSpec, Spec } from '../../core/spec.ts'
import type { StateSnapshot } from '../state/store.ts'
import { resolveVms, type ResolvedVm } from './placement.ts'
import { hashHost, stableHash } from '../specfile/hash.ts'

export type Action =
  | { kind: 'network.create', driver: string, specHash: string, reason: string }
  | { kind: 'network.delete', driver: string, reason: string }
  | { kind: 'host.create', host: HostSpec, specHash: string, reason: string }
  | { kind: 'host.delete', name: string, reason: string }
  | { kind: 'vm.create', vm: ResolvedVm, specHash: string, reason: string }
  | { kind: 'vm.delete', name: string, host: string, reason: string }
  | { kind: 'vm.balloon', name: string, host: string, allocatedBytes: number, specHash: string, reason: string }
  | { kind: 'wires.sync', wires: number, wiringHash: string, reason: string }

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

export function plan (spec: Spec, state: StateSnapshot, prefix: string, observed?: Observation, wires: Spec['network']['wires'] = spec.network.wires): Plan {
  const resolved = resolveVms(spec, prefix)
  const actions: Action[] = []
  const deletes: Action[] = []

  // Hosts to (re)create.
  const replacedHosts = new Set<string>()
  const createHosts: Action[] = []
  const held: string[] = []
  for (const host of Object.values(spec.hosts).sort((a, b) => a.name.localeCompare(b.name))) {
    const row = state.hosts.find(h => h.name === host.name)
    const h = hostHash(host)
    const health = observed?.hosts[host.name]
    if (row === undefined) {
      createHosts.push({ kind: 'host.create', host, specHash: h, reason: 'new host' })
    } else if (row.specHash !== h || row.driver !== host.driver) {
      deletes.push({ kind: 'host.delete', name: host.name, reason: 'spec changed: replacing host' })
      createHosts.push({ kind: 'host.create', host, specHash: h, reason: 'spec changed' })
      replacedHosts.add(host.name)
    } else if (row.status !== 'ready' || !row.bootstrapped) {
      createHosts.push({ kind: 'host.create', host, specHash: h, reason: `finishing interrupted ${row.status === 'destroying' ? 'removal' : 'creation'}` })
      replacedHosts.add(host.name)
    } else if (health === 'gone' || health === 'unreachable') {
      createHosts.push({ kind: 'host.create', host, specHash: h, reason: `host is ${health}: repairing` })
      replacedHosts.add(host.name)
    } else if (observed?.wantedAgentBuild !== undefined && observed.agentBuilds?.[host.name] !== undefined && observed.agentBuilds[host.name] !== observed.wantedAgentBuild) {
      // Guests outlive the agent, so an upgrade touches no VM; except on a Xen host, where the
      // swap disks of running guests are NBD devices on the agent's export, which a restart breaks.
      const swappers = host.hypervisor.backend === 'xen'
        ? state.vms.filter(v => v.host === host.name && spec.vms[v.name]?.swapBytes !== undefined).map(v => v.name).sort()
        : []
      if (swappers.length > 0) {
        held.push(`host ${host.name}: agent upgrade ${observed.agentBuilds[host.name] ?? ''} -> ${observed.wantedAgentBuild} held back: an agent restart would break the swap disks of ${swappers.join(', ')} on this Xen host (docs/xen.md); remove or move them first`)
        continue
      }
      createHosts.push({ kind: 'host.create', host, specHash: h, reason: `upgrading host agent ${observed.agentBuilds[host.name] ?? ''} -> ${observed.wantedAgentBuild}` })
    }
  }
  for (const row of state.hosts) {
    if (spec.hosts[row.name] === undefined) deletes.push({ kind: 'host.delete', name: row.name, reason: 'not in spec' })
  }
  const deletedHosts = new Set(deletes.filter(a => a.kind === 'host.delete').map(a => (a as { name: string }).name))

  // VMs.
  const createVms: Action[] = []
  const vmDeletes: Action[] = []
  for (const vm of Object.values(resolved)) {
    const row = state.vms.find(v => v.name === vm.spec.name)
    const h = vmHash(vm)
    const run = observed?.vms[vm.spec.name]
    if (row?.status === 'migrating') {
      continue // `supercloud migrate` owns it until it finishes or rolls back
    } else if (row === undefined) {
      createVms.push({ kind: 'vm.create', vm, specHash: h, reason: 'new VM' })
    } else if (row.specHash !== h || row.host !== vm.host) {
      vmDeletes.push({ kind: 'vm.delete', name: row.name, host: row.host, reason: row.host !== vm.host ? `moving to ${vm.host}` : 'spec changed: replacing VM' })
      createVms.push({ kind: 'vm.create', vm, specHash: h, reason: 'spec changed' })
    } else if (row.status !== 'ready') {
      createVms.push({ kind: 'vm.create', vm, specHash: h, reason: `finishing interrupted ${row.status === 'destroying' ? 'removal' : 'creation'}` })
    } else if (replacedHosts.has(vm.host) || deletedHosts.has(vm.host)) {
      createVms.push({ kind: 'vm.create', vm, specHash: h, reason: `host ${vm.host} is being (re)created` })
    } else if (run !== undefined && run !== 'running') {
      createVms.push({ kind: 'vm.create', vm, specHash: h, reason: `VM is ${run}: restarting` })
    } else if (row.record !== undefined && row.record.memory.allocatedBytes !== vm.spec.memory.allocatedBytes) {
      createVms.push({ kind: 'vm.balloon', name: vm.spec.name, host: vm.host, allocatedBytes: vm.spec.memory.allocatedBytes, specHash: h, reason: 'allocated memory changed' })
    }
  }
  for (const row of state.vms) {
    if (spec.vms[row.name] === undefined) vmDeletes.push({ kind: 'vm.delete', name: row.name, host: row.host, reason: 'not in spec' })
    else if (deletedHosts.has(row.host) && !vmDeletes.some(a => a.kind === 'vm.delete' && a.name === row.name)) {
      vmDeletes.push({ kind: 'vm.delete', name: row.name, host: row.host, reason: `host ${row.host} is being removed` })
    }
  }

  // Networks.
  const wantedDrivers = new Set<string>(Object.values(spec.hosts).map(h => h.driver).filter(d => NETWORK_DRIVERS.has(d)))
  const netCreates: Action[] = []
  for (const d of [...wantedDrivers].sort()) {
    const row = state.networks.find(n => n.driver === d)
    const h = networkHash(spec, d)
    if (row === undefined) netCreates.push({ kind: 'network.create', driver: d, specHash: h, reason: 'new network' })
    else if (row.specHash !== h) netCreates.push({ kind: 'network.create', driver: d, specHash: h, reason: 'sites or WAN changed' })
    else if (row.status !== 'ready') netCreates.push({ kind: 'network.create', driver: d, specHash: h, reason: 'finishing interrupted creation' })
  }
  const netDeletes: Action[] = state.networks
    .filter(n => !wantedDrivers.has(n.driver))
    .map(n => ({ kind: 'network.delete' as const, driver: n.driver, reason: 'no hosts of this driver left' }))

  // VirtualWire: endpoints follow wires and placement; re-synced when either changed or drifted.
  const wiring: Action[] = []
  const wh = wiringHash(spec, wires, resolved)
  const hadWires = observed?.wiringApplied !== undefined && observed.wiringApplied !== ''
  if ((wires.length > 0 || hadWires) && (observed?.wiringApplied !== wh || observed.wiringDrift === true)) {
    wiring.push({ kind: 'wires.sync', wires: wires.length, wiringHash: wh, reason: observed?.wiringDrift === true ? 'endpoints drifted on a host' : 'wires or placement changed' })
  }

  actions.push(...vmDeletes, ...deletes, ...netDeletes, ...netCreates, ...createHosts, ...wiring, ...createVms)
  return { actions, resolved, ...(held.length > 0 ? { held } : {}) }
}

/** The plan as a human reads it: one line per action, `+` create, `-` delete, `~` update, then `!` for what is held back. */
export function describePlan (p: Plan): string[] {
  return [...p.actions.map(a => describeAction(a)), ...(p.held ?? []).map(h => `! ${h}`)]
}

function describeAction (a: Action): string {
  switch (a.kind) {
    case 'network.create': return `+ network ${a.driver}  (${a.reason})`
    case 'network.delete': return `- network ${a.driver}  (${a.reason})`
    case 'host.create': return `+ host ${a.host.name} [${a.host.driver}, site ${a.host.site}]  (${a.reason})`
    case 'host.delete': return `- host ${a.name}  (${a.reason})`
    case 'vm.create': return `+ vm ${a.vm.spec.name} on ${a.vm.host} [${a.vm.nics.map(n => n.address).join(', ')}]  (${a.reason})`
    case 'vm.delete': return `- vm ${a.name} on ${a.host}  (${a.reason})`
    case 'vm.balloon': return `~ vm ${a.name} allocated memory -> ${Math.round(a.allocatedBytes / 1048576)}M  (${a.reason})`
    case 'wires.sync': return `~ virtualwire ${a.wires} wire${a.wires === 1 ? '' : 's'}  (${a.reason})`
  }
  return ''
}
