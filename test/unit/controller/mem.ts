/**
 * In-memory implementations of the controller's collaborators for unit tests of its
 * orchestration: a cloud (CloudDriver) whose hosts keep guests in maps, a host agent
 * (HostAgent) per connection to such a host, and the sessions, host setup, images and local
 * machine that hand them out. The state store and event hub are the real ones (SQLite in a
 * temporary directory). Faults are injected per host (see MemHost.faults).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { CloudDriver, DriverContext, HostRecord } from '../../../drivers/cloud.ts'
import { AgentError, CancelledError } from '../../../core/errors.ts'
import type { HostSpec, Spec } from '../../../core/spec.ts'
import type { SshConnection } from '../../../core/ssh.ts'
import { Controller } from '../../../blanket-manager/controller/controller.ts'
import type { GuestImages, HostSetup, LocalMachine } from '../../../blanket-manager/controller/components.ts'
import type { HostAgent, HostSessions } from '../../../blanket-manager/controller/sessions.ts'
import type { VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import { EventHub } from '../../../blanket-manager/events/hub.ts'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'

type Fn<K extends keyof HostAgent> = HostAgent[K] extends (...a: infer P) => infer R ? { args: P, ret: Awaited<R> } : never
type VmInfo = Fn<'vmStatus'>['ret']
type AgentEvent = Parameters<Fn<'onEvent'>['args'][0]>[0]

export const AGENT_BUILD = 'membuild0001'

/** One guest on a MemHost. */
export interface MemGuest {
  state: VmInfo['state']
  /** 'running' once it runs (recovery reads `detail`), 'incoming' while it waits for a migration. */
  detail: string
}

/** A host of the in-memory cloud: its guests, the calls its agents were asked, and faults to inject. */
export class MemHost {
  readonly guests = new Map<string, MemGuest>()
  /** Every agent call, e.g. 'createVm web1', 'destroyVm web1'. */
  readonly calls: string[] = []
  readonly faults: {
    /** The agent process dies during createVm of this VM (the connection drops; the next connection reaches its restarted agent). */
    dieOnCreate?: string
    /** prepareIncoming refuses with this error. */
    refuseIncoming?: AgentError
    /** The connection drops on this call (e.g. 'finishIncoming'); the agent lives on, and a new connection reaches it. */
    dropConnectionOn?: string
    /** migrateOut waits (for a cancel) instead of streaming at once; called with the VM once it waits. */
    holdStream?: (vm: string) => void
  } = {}

  /** The image each createVm was given, by VM (the last one). */
  readonly images = new Map<string, VmLaunch['image']>()

  /** The TLS credentials each migration call brought ('prepareIncoming' / 'migrateOut'), in order. */
  readonly tls: Array<{ call: string, tls: unknown }> = []

  /** Running migrations out of this host: VM -> cancel. */
  readonly outgoing = new Map<string, () => void>()

  constructor (readonly record: HostRecord, readonly cloud: MemCloud) {}

  running (): string[] { return [...this.guests].filter(([, g]) => g.state === 'running').map(([n]) => n).sort() }
}

/** The in-memory cloud: a CloudDriver (registered as 'local') that makes MemHosts. */
export class MemCloud implements CloudDriver {
  readonly name = 'local'
  readonly hosts = new Map<string, MemHost>()
  /** Driver calls, e.g. 'createHost h1', 'destroyHost h1'. */
  readonly calls: string[] = []
  /** The hypervisor mode every host's bootstrap reports (KVM: live memory hot-plug is allowed there, planner/live.ts). */
  accel: 'kvm' | 'tcg' = 'kvm'
  private nextAddress = 10
  /** Time each driver call and the agents' hello, listVms, createVm and destroyVm take (ms; 0: none), so that calls overlap as over a network. */
  latencyMs = 0
  /** The most hosts that had such a call in flight at once. */
  maxBusyHosts = 0
  private readonly inFlight = new Map<string, number>()

  /** Runs `fn` as a call to `host` (latency, the busy-hosts gauge). */
  async busy<T> (host: string, fn: () => T | Promise<T>): Promise<T> {
    this.inFlight.set(host, (this.inFlight.get(host) ?? 0) + 1)
    this.maxBusyHosts = Math.max(this.maxBusyHosts, this.inFlight.size)
    try {
      if (this.latencyMs > 0) await new Promise(resolve => setTimeout(resolve, this.latencyMs))
      return await fn()
    } finally {
      const n = (this.inFlight.get(host) ?? 1) - 1
      if (n === 0) this.inFlight.delete(host); else this.inFlight.set(host, n)
    }
  }

  async ensureNetwork (): Promise<void> { this.calls.push('ensureNetwork') }
  async destroyNetwork (): Promise<void> { this.calls.push('destroyNetwork') }

  async createHost (_ctx: DriverContext, spec: HostSpec): Promise<HostRecord> {
    return await this.busy(spec.name, () => this.create(spec))
  }

  private create (spec: HostSpec): HostRecord {
    this.calls.push(`createHost ${spec.name}`)
    const existing = this.hosts.get(spec.name)
    if (existing !== undefined) return existing.record
    const address = `198.18.0.${this.nextAddress++}`
    const record: HostRecord = {
      name: spec.name,
      site: spec.site,
      driver: 'local',
      address,
      ssh: { host: address, port: 22, username: 'root', privateKeyPath: '/nonexistent' },
      stateDir: `/mem/${spec.name}`,
      guestBridge: 'br0',
      driverData: {}
    }
    this.hosts.set(spec.name, new MemHost(record, this))
    return record
  }

  async describeHost (_ctx: DriverContext, record: HostRecord): Promise<'running' | 'gone'> {
    return await this.busy(record.name, () => this.hosts.has(record.name) ? 'running' : 'gone')
  }

  async destroyHost (_ctx: DriverContext, record: HostRecord): Promise<void> {
    await this.busy(record.name, () => {
      this.calls.push(`destroyHost ${record.name}`)
      this.hosts.delete(record.name)
    })
  }

  host (name: string): MemHost {
    const h = this.hosts.get(name)
    if (h === undefined) throw new Error(`no mem host ${name}`)
    return h
  }

  byAddress (address: string): MemHost {
    const h = [...this.hosts.values()].find(x => x.record.address === address)
    if (h === undefined) throw new Error(`no mem host at ${address}`)
    return h
  }
}

/** One connection to a MemHost's agent. Once the agent died, every call on it fails as on a real closed connection. */
export class MemAgent implements HostAgent {
  private dead = false
  private readonly listeners = new Set<(ev: AgentEvent) => void>()

  constructor (readonly host: string, private readonly h: MemHost) {}

  private call (what: string): void {
    if (this.dead) throw new AgentError('SC_AGENT_GONE', `agent on ${this.host}: connection closed`)
    if (this.h.faults.dropConnectionOn !== undefined && what.startsWith(this.h.faults.dropConnectionOn)) {
      this.h.faults.dropConnectionOn = undefined
      this.dead = true
      throw new AgentError('SC_AGENT_GONE', `agent on ${this.host}: connection closed`)
    }
    this.h.calls.push(what)
  }

  private info (name: string): VmInfo {
    const g = this.h.guests.get(name)
    return g === undefined ? { name, state: 'absent' } : { name, state: g.state, detail: g.detail }
  }

  private emit (ev: { type: string, vm: string, [k: string]: unknown }): void {
    for (const l of this.listeners) l({ ...ev, ts: new Date().toISOString() })
  }

  async hello (): Promise<Fn<'hello'>['ret']> {
    await this.h.cloud.busy(this.host, () => {})
    this.call('hello')
    return { protocol: 1, build: AGENT_BUILD, pid: 1, hostname: this.host, stateDir: this.h.record.stateDir, bridge: 'br0', qemuVersion: 'mem', memTotalBytes: 8 << 30, cpus: 4 }
  }

  async listVms (): Promise<VmInfo[]> { await this.h.cloud.busy(this.host, () => {}); this.call('listVms'); return [...this.h.guests.keys()].map(n => this.info(n)) }

  async createVm (...[l]: Fn<'createVm'>['args']): Promise<VmInfo> {
    await this.h.cloud.busy(this.host, () => {})
    this.call(`createVm ${l.name}`)
    if (this.h.faults.dieOnCreate === l.name) {
      this.h.faults.dieOnCreate = undefined
      this.dead = true
      // The half-made guest does not run; the supervisor restarts the agent for the next connection.
      this.h.guests.set(l.name, { state: 'other', detail: 'half-made' })
      throw new AgentError('SC_AGENT_GONE', `agent on ${this.host}: connection closed`)
    }
    this.h.guests.set(l.name, { state: 'running', detail: 'running' })
    this.h.images.set(l.name, l.image)
    return { name: l.name, state: 'running', accel: 'tcg' }
  }

  async destroyVm (...[name]: Fn<'destroyVm'>['args']): Promise<void> { await this.h.cloud.busy(this.host, () => {}); this.call(`destroyVm ${name}`); this.h.guests.delete(name) }

  async stopVm (...[name]: Fn<'stopVm'>['args']): Promise<void> {
    this.call(`stopVm ${name}`)
    if (this.h.guests.has(name)) this.h.guests.set(name, { state: 'shutdown', detail: 'shutdown' })
  }
  async updateVm (...[l]: Fn<'updateVm'>['args']): Promise<Fn<'updateVm'>['ret']> {
    this.call(`updateVm ${l.name} cpus=${l.cpus} memory=${l.memory.requestedBytes} disks=${l.disks.map(d => d.name).join(',')}`)
    return { plugged: { bootCpus: 1, bootMemoryBytes: l.memory.requestedBytes, dimmBytes: [], ports: {} } }
  }

  async vmStatus (name: string): Promise<VmInfo> { this.call(`vmStatus ${name}`); return this.info(name) }
  async balloon (name: string): Promise<void> { this.call(`balloon ${name}`) }

  async prepareIncoming (...[p]: Fn<'prepareIncoming'>['args']): Promise<Fn<'prepareIncoming'>['ret']> {
    this.call(`prepareIncoming ${p.launch.name}`)
    this.h.tls.push({ call: 'prepareIncoming', tls: p.tls })
    if (this.h.faults.refuseIncoming !== undefined) throw this.h.faults.refuseIncoming
    if ((this.h.guests.get(p.launch.name)?.state ?? 'absent') !== 'absent') throw new AgentError('SC_MIGRATION_DEST_BUSY', `${this.host}: a guest named ${p.launch.name} already exists on this host`)
    this.h.guests.set(p.launch.name, { state: 'paused', detail: 'incoming' })
    return { migrationPort: 49152, nbdPort: 49153, diskNodes: [] }
  }

  async migrateOut (...[p]: Fn<'migrateOut'>['args']): Promise<Fn<'migrateOut'>['ret']> {
    this.call(`migrateOut ${p.name}`)
    this.h.tls.push({ call: 'migrateOut', tls: p.tls })
    const dest = this.h.cloud.byAddress(p.destIp)
    this.emit({ type: 'migration.progress', vm: p.name, phase: 'memory', sentBytes: 1, remainingBytes: 1, dirtyRate: 0, iteration: 1, fraction: 0.5 })
    const hold = this.h.faults.holdStream
    if (hold !== undefined) {
      await new Promise<void>((_resolve, reject) => {
        this.h.outgoing.set(p.name, () => { reject(new CancelledError(`vm.migrate.outgoing on ${this.host}`)) })
        hold(p.name)
      }).finally(() => this.h.outgoing.delete(p.name))
    }
    this.emit({ type: 'migration.switchover', vm: p.name })
    this.h.guests.set(p.name, { state: 'shutdown', detail: 'migrated' })
    dest.guests.set(p.name, { state: 'paused', detail: 'running' })
    return { mode: p.mode, postcopy: false, totalMs: 10, downtimeMs: 1, sentBytes: 2, iterations: 1, diskSentBytes: 0, diskSizeBytes: 0, diskReused: false }
  }

  async continueMigration (name: string): Promise<void> { this.call(`continueMigration ${name}`) }
  async migrationActive (name: string): Promise<boolean> { this.call(`migrationActive ${name}`); return this.h.outgoing.has(name) }
  async cancelMigration (name: string): Promise<void> { this.call(`cancelMigration ${name}`); this.h.outgoing.get(name)?.() }

  async finishIncoming (name: string): Promise<VmInfo> {
    this.call(`finishIncoming ${name}`)
    const g = this.h.guests.get(name)
    if (g !== undefined) this.h.guests.set(name, { state: 'running', detail: 'running' })
    return this.info(name)
  }

  async markArrival (name: string): Promise<{ nodes: string[] }> { this.call(`markArrival ${name}`); return { nodes: [] } }
  async dirtyStatus (name: string): Promise<Fn<'dirtyStatus'>['ret']> { this.call(`dirtyStatus ${name}`); return { present: false, dirtyBytes: 0, sizeBytes: 0 } }
  async dropDeparted (name: string): Promise<void> { this.call(`dropDeparted ${name}`) }

  onEvent (fn: (ev: AgentEvent) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  async ensureSwitches (): Promise<void> { this.call('ensureSwitches') }
  async attach (): Promise<void> { this.call('attach') }
  async consoleSocket (name: string): Promise<string> { this.call(`consoleSocket ${name}`); return `/mem/${name}.sock` }
  async overdriverRepository (): Promise<Fn<'overdriverRepository'>['ret']> { throw new AgentError('SC_AGENT_UNKNOWN_METHOD', 'not in memory') }
  async overdriverIssue (): Promise<Fn<'overdriverIssue'>['ret']> { throw new AgentError('SC_AGENT_UNKNOWN_METHOD', 'not in memory') }
  async overdriverExportTable (): Promise<Fn<'overdriverExportTable'>['ret']> { throw new AgentError('SC_AGENT_UNKNOWN_METHOD', 'not in memory') }
  async overdriverAdoptTable (): Promise<Fn<'overdriverAdoptTable'>['ret']> { throw new AgentError('SC_AGENT_UNKNOWN_METHOD', 'not in memory') }
  async overdriverHandover (): Promise<void> { throw new AgentError('SC_AGENT_UNKNOWN_METHOD', 'not in memory') }

  close (): void { this.dead = true }
}

/** Agent connections to the cloud's hosts (cached per host, as the real sessions are); no SSH. */
export class MemSessions implements HostSessions<MemAgent> {
  private readonly agents = new Map<string, MemAgent>()
  constructor (private readonly cloud: MemCloud) {}
  async connect (host: string): Promise<SshConnection> { throw new AgentError('SC_HOST_UNREACHABLE', `no SSH to ${host} in memory`) }
  async agent (host: string): Promise<MemAgent> {
    let a = this.agents.get(host)
    if (a === undefined) { a = new MemAgent(host, this.cloud.host(host)); this.agents.set(host, a) }
    return a
  }

  adopt (host: string, agent: MemAgent): void { this.agents.set(host, agent) }
  drop (host: string): void { this.agents.get(host)?.close(); this.agents.delete(host) }
  close (): void { for (const h of [...this.agents.keys()]) this.drop(h) }
}

function memHostSetup (cloud: MemCloud): HostSetup<MemAgent> {
  return {
    wantedAgentBuild: async () => AGENT_BUILD,
    bootstrap: async h => ({ agent: new MemAgent(h.name, cloud.host(h.name)), accel: { mode: cloud.accel, reason: 'in memory' } }),
    endpointManager: async () => {}
  }
}

const memImages: GuestImages = {
  tiny: async () => ({ id: 'tiny0', kernel: '/mem/vmlinuz', initrd: '/mem/initrd', pvh: { gz: '/mem/vmlinux.gz' } }),
  // As ensureImageOnHost: a `.gz` file is unpacked on the host under its name without `.gz`.
  place: async (host, id, files) => Object.fromEntries(Object.keys(files).map(f => f.replace(/\.gz$/, '')).map(f => [f, `/mem/${host}/images/${id}/${f}`]))
}

const memLocal: LocalMachine = { ensureKey: async dir => join(dir, 'id_ed25519'), prefixTaken: () => false }

/** A test bench: one in-memory cloud and state directory; `controller()` is one CLI run's controller. */
export class Bench {
  readonly cloud = new MemCloud()
  readonly dir = mkdtempSync(join(tmpdir(), 'sc-ctl-'))
  private readonly open: Array<Controller<MemAgent>> = []

  /** A controller over this bench's state and cloud, with its own agent connections (like a new CLI process); `env`: its settings. */
  controller (env?: NodeJS.ProcessEnv): Controller<MemAgent> {
    const store = StateStore.open(this.dir)
    const c = new Controller<MemAgent>({
      name: 'unit',
      dir: this.dir,
      store,
      events: new EventHub(store),
      drivers: { local: this.cloud },
      sessions: new MemSessions(this.cloud),
      images: memImages,
      hosts: memHostSetup(this.cloud),
      local: memLocal,
      ...(env !== undefined ? { env } : {})
    })
    this.open.push(c)
    return c
  }

  cleanup (): void {
    for (const c of this.open) c.close()
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** A spec of two local hosts (h1, h2) on one site, VMs of the builtin image (`disks` as YAML flow text). */
export function twoHosts (vms: Record<string, { host: string, memory?: string, cpus?: number, disks?: string }>): Spec {
  const text = [
    'name: unit',
    'sites:',
    '  s1: { subnet: 198.18.0.0/24 }',
    'hosts:',
    '  h1: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    '  h2: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    'images:',
    '  tiny: { builtin: tiny }',
    'vms:',
    ...Object.entries(vms).map(([n, v]) => {
      const more = [v.cpus !== undefined ? `cpus: ${v.cpus}` : '', v.disks !== undefined ? `disks: ${v.disks}` : ''].filter(x => x !== '')
      return `  ${n}: { ${[`image: tiny, host: ${v.host}, memory: ${v.memory ?? '128M'}`, ...more].join(', ')} }`
    }),
    ''
  ].join('\n')
  return parseSpec(text, join(tmpdir(), 'unit', 'supercloud.yaml'))
}
