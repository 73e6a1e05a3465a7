/**
 * The controller: one supercloud's spec, state, drivers and host connections, and the
 * operations the CLI exposes (up, down, status, console). Holds no logic of its own that
 * could be pure: planning lives in planner/, placement in planner/placement.ts.
 */
import { rm } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import type { CloudDriver, DriverContext, HostRecord } from '../drivers/cloud.ts'
import { createLocalDriver } from '../drivers/local/driver.ts'
import { ensureSupercloudKey } from '../drivers/local/keys.ts'
import { createSshDriver } from '../drivers/ssh/driver.ts'
import { createEc2Driver } from '../drivers/ec2/driver.ts'
import { buildTinyImage } from '../images/guest/build.ts'

type TinyImage = Awaited<ReturnType<typeof buildTinyImage>>
import { AgentClient } from './agent/client.ts'
import type { VmInfo, VmLaunch } from './agent/protocol.ts'
import { bootstrapHost, type BootstrapResult } from './bootstrap/blanket.ts'
import { bootHostIntoXen } from './bootstrap/xen-boot.ts'
import { brokerSwapLaunch } from './agent/overdriver.ts'
import { ensureEndpointManager, endpointRoot, VW_MTU } from './bootstrap/endpoint-manager.ts'
import { EndpointRefusedError, readEndpoints, writeEndpoint } from './wiring/endpoint-files.ts'
import { applyExtenderRoutes, connectExtender, sshShell, type ExtenderHostSide } from '../virtualwire/extender/manage.ts'
import { extenderDevName, extenderRoutes, extenderTunnel, DEFAULT_EXTENDER_PORT, type ExtenderTunnelPlan } from '../virtualwire/extender/openvpn.ts'
import { assignConnectorIds, compileTopology, diffEndpoints, type EndpointWrite, type Topology } from '../virtualwire/topology/compile.ts'
import { wireKey } from '../virtualwire/topology/wires.ts'
import type { EndpointConfig, WireSpec } from '../virtualwire/types.ts'
import { agentBundle } from './agent/bundle.ts'
import { ensureImageOnHost } from './bootstrap/images.ts'
import { CancelledError, CapacityError, NotFoundError, SupercloudError, throwIfAborted } from '../core/errors.ts'
import type { MigrationMode, MigrationProgress } from '../drivers/qemu/migration-progress.ts'
import type { MigrationSummary } from '../drivers/qemu/migration.ts'
import { decideReuse, formatDiskSummary, obsoleteAfter, type DirtyStatus, type DiskReuse } from './migration/disk-reuse.ts'
import { isMigrationId } from '../core/names.ts'
import { Switchover, SWITCHOVER_HOOKS, type MigrationSwitchover } from './migration/switchover.ts'
import { randomBytes } from 'node:crypto'
import { describePlan, plan, vmHash, wiringHash, type Action, type Observation, type Plan } from './planner/plan.ts'
import { resolveVms, withOverrides, xenMigrationUnsupported, type PlacementOverride, type ResolvedVm } from './planner/placement.ts'
import type { OperationOptions, ProgressEvent } from '../core/progress.ts'
import type { Spec } from '../core/spec.ts'
import { SshConnection, shq } from '../core/ssh.ts'
import type { ClientChannel } from 'ssh2'
import { supercloudDir } from './state/paths.ts'
import { StateStore, type HostRow, type VmRow } from './state/store.ts'
import { EventHub } from './events/hub.ts'
import { reportMigration } from './events/migration.ts'
import type { EventInput } from './events/schema.ts'

export interface ControllerOptions {
  /** Override the state root (tests); default from the environment. */
  env?: NodeJS.ProcessEnv
  onProgress?: (ev: ProgressEvent) => void
}

export interface MigrateOptions {
  mode?: MigrationMode
  maxDowntimeMs?: number
  /** Bytes/s. */
  bandwidth?: number
  deadlineMs?: number
  signal?: AbortSignal
  onProgress?: (p: MigrationProgress) => void
}

export interface MigrateResult extends MigrationSummary {
  from: string
  to: string
}

export interface UpResult {
  plan: string[]
  applied: number
}

export interface HostStatus {
  name: string
  site: string
  driver: string
  address?: string
  status: string
  health: 'running' | 'gone' | 'unreachable' | 'unknown'
  accel?: string
  accelReason?: string
}

export interface VmStatus {
  name: string
  host: string
  status: string
  state: VmInfo['state'] | 'unknown'
  addresses: string[]
  memory?: { requestedBytes: number, allocatedBytes: number }
  cpus?: number
  accel?: string
  error?: string
}

export interface StatusReport {
  name: string
  prefix?: string
  stateFile: string
  hosts: HostStatus[]
  vms: VmStatus[]
}

/** Default time a guest may take to print its ready marker (TCG on a busy 2-core machine). */
export function bootTimeoutMs (env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SUPERCLOUD_BOOT_TIMEOUT_MS ?? '')
  return Number.isFinite(v) && v > 0 ? v : 180000
}

export class Controller {
  readonly store: StateStore
  readonly dir: string
  private readonly drivers: Record<string, CloudDriver> = { local: createLocalDriver(), ssh: createSshDriver(), ec2: createEc2Driver() }
  private readonly ssh = new Map<string, Promise<SshConnection>>()
  private readonly agents = new Map<string, Promise<AgentClient>>()
  private readonly progress: (ev: ProgressEvent) => void
  /** The VirtualWire topology of the current `up` (wired NICs join endpoint bridges). */
  private currentTopology?: Topology

  /** Typed, sequenced events (persisted in the state store; `supercloud events`, `serve`). */
  readonly events: EventHub

  constructor (readonly name: string, private readonly opts: ControllerOptions = {}) {
    this.dir = supercloudDir(name, opts.env)
    this.store = StateStore.open(this.dir)
    this.events = new EventHub(this.store)
    this.progress = opts.onProgress ?? (() => {})
  }

  /** Driver context: from the spec when given (and remembered), else the remembered one. */
  async context (spec?: Spec): Promise<DriverContext> {
    const prefix = this.store.prefix(p => namespaceTaken(p))
    const keyPath = await ensureSupercloudKey(this.dir)
    if (spec !== undefined) {
      const ctx: DriverContext = { name: this.name, prefix, dir: this.dir, keyPath, sites: spec.sites, wan: spec.wan, hosts: spec.hosts }
      this.store.setMeta('context', JSON.stringify({ sites: ctx.sites, wan: ctx.wan, hosts: ctx.hosts }))
      return ctx
    }
    const saved = JSON.parse(this.store.getMeta('context') ?? '{"sites":{},"wan":{"delayMs":0}}') as Pick<DriverContext, 'sites' | 'wan' | 'hosts'>
    return { name: this.name, prefix, dir: this.dir, keyPath, ...saved }
  }

  /** Publishes an event; a failure to record it never fails the operation it describes. */
  private emit (ev: EventInput): void {
    try { this.events.publish(ev) } catch { /* state closing */ }
  }

  private driver (name: string): CloudDriver {
    const d = this.drivers[name]
    if (d === undefined) throw new SupercloudError('SC_UNKNOWN_DRIVER', `no driver named '${name}'`)
    return d
  }

  /** SSH connection to a host (cached; reconnects when closed). */
  async connect (host: string, signal?: AbortSignal): Promise<SshConnection> {
    const row = this.store.host(host)
    if (row?.record === undefined) throw new NotFoundError('host', host)
    const record = row.record
    let p = this.ssh.get(host)
    if (p !== undefined) {
      const c = await p.catch(() => undefined)
      if (c !== undefined && !c.isClosed) return c
    }
    p = SshConnection.connect(host, record.ssh, signal !== undefined ? { signal } : {})
    this.ssh.set(host, p)
    p.catch(() => this.ssh.delete(host))
    return await p
  }

  /** The host agent's RPC client (cached). */
  async agent (host: string): Promise<AgentClient> {
    let p = this.agents.get(host)
    if (p === undefined) {
      p = (async () => {
        const row = this.store.host(host)
        if (row?.record === undefined) throw new NotFoundError('host', host)
        const ssh = await this.connect(host)
        return await AgentClient.connect(host, ssh, `${row.record.stateDir}/agent.sock`)
      })()
      this.agents.set(host, p)
      p.catch(() => this.agents.delete(host))
    }
    return await p
  }

  private dropHostConnections (host: string): void {
    void this.agents.get(host)?.then(a => a.close()).catch(() => {})
    this.agents.delete(host)
    void this.ssh.get(host)?.then(c => c.close()).catch(() => {})
    this.ssh.delete(host)
  }

  /** Looks at the hosts and guests that the state says exist. */
  async observe (): Promise<Observation> {
    const ctx = await this.context()
    const obs: Observation = { hosts: {}, vms: {}, wantedAgentBuild: (await agentBundle()).hash }
    await Promise.all(this.store.hosts().map(async row => {
      if (row.record === undefined || row.status !== 'ready') return
      const health = await this.driver(row.driver).describeHost(ctx, row.record).catch(() => 'unreachable' as const)
      obs.hosts[row.name] = health
      if (health !== 'running') return
      try {
        const agent = await this.agent(row.name)
        // A VM's state is what its own host says: another host may still list a copy that is
        // gone (the destination of a rolled-back migration) and must not hide the running one.
        const here = new Set(this.store.vms().filter(v => v.host === row.name).map(v => v.name))
        for (const vm of await agent.listVms()) if (here.has(vm.name)) obs.vms[vm.name] = vm.state
        ;(obs.agentBuilds ??= {})[row.name] = (await agent.hello()).build
      } catch {
        obs.hosts[row.name] = 'unreachable'
      }
    }))
    for (const vm of this.store.vms()) {
      if (obs.vms[vm.name] === undefined && obs.hosts[vm.host] === 'running') obs.vms[vm.name] = 'absent'
    }
    return obs
  }

  /** Placement changes made by `migrate`, which later `up`s keep (see planner/placement.ts). */
  overrides (): Record<string, PlacementOverride> {
    return JSON.parse(this.store.getMeta('placement-overrides') ?? '{}') as Record<string, PlacementOverride>
  }

  /** The placement override that keeps `vm` on `to` until its spec `host:` line changes. */
  private overrideFor (spec: Spec, vm: string, to: string): PlacementOverride {
    const specHost = spec.vms[vm]?.host
    return specHost !== undefined ? { host: to, specHost } : { host: to }
  }

  /**
   * Records that `row`'s VM now runs on `to` (after a migration, or its recovery): the
   * placement override, and its state row with the spec hash of its new placement.
   */
  private recordMove (spec: Spec, row: VmRow, to: string): { spec: Spec, resolved: Record<string, ResolvedVm> } {
    const overrides = this.overrides()
    overrides[row.name] = this.overrideFor(spec, row.name, to)
    this.store.setMeta('placement-overrides', JSON.stringify(overrides))
    const eff = this.effectiveSpec(spec)
    const resolved = resolveVms(eff, this.store.prefix())
    const moved = resolved[row.name]
    this.store.putVm({ ...row, host: to, status: 'ready', ...(row.record !== undefined ? { record: { ...row.record, host: to } } : {}), specHash: moved !== undefined ? vmHash(moved) : row.specHash })
    return { spec: eff, resolved }
  }

  /**
   * Disk reuse on return: which host holds the disk images `vm` left there, and the migration
   * that left them (the VM's current QEMU records its writes since then). See migration/disk-reuse.ts.
   */
  private diskReuse (vm: string): DiskReuse | undefined {
    try {
      const r = JSON.parse(this.store.getMeta(`disk-reuse:${vm}`) || 'null') as DiskReuse | null
      return r !== null && typeof r.host === 'string' && isMigrationId(r.id) ? r : undefined
    } catch {
      return undefined
    }
  }

  private setDiskReuse (vm: string, r: DiskReuse | undefined): void {
    this.store.setMeta(`disk-reuse:${vm}`, r !== undefined ? JSON.stringify(r) : '')
  }

  /** Deletes the disk images `vm` left on the host in its reuse record (best effort) and forgets them. */
  private async dropDiskReuse (vm: string, host?: string): Promise<void> {
    const r = this.diskReuse(vm)
    const h = host ?? r?.host
    if (h !== undefined && this.store.host(h)?.record !== undefined) {
      try { await (await this.agent(h)).dropDeparted(vm) } catch { /* host gone or unreachable: its images went with it or wait for the next incoming */ }
    }
    if (r !== undefined && (host === undefined || r.host === host)) this.setDiskReuse(vm, undefined)
  }

  /** The spec as `up` applies it: the file plus the placement changes made by `migrate`. */
  effectiveSpec (spec: Spec): Spec {
    return withOverrides(spec, this.overrides())
  }

  async plan (spec: Spec): Promise<Plan> {
    const ctx = await this.context(spec)
    const obs = await this.observe()
    obs.wiringApplied = this.store.getMeta('wires-applied') ?? ''
    const eff = this.effectiveSpec(spec)
    const wires = this.wires(spec)
    if (wires.length > 0 && obs.wiringApplied !== '') obs.wiringDrift = await this.wiringDrifted(eff, ctx.prefix, wires)
    return plan(eff, this.store.snapshot(), ctx.prefix, obs, wires)
  }

  /** Whether any host's endpoints differ from what the wires want (an endpoint manager lost them, a host came back empty). */
  private async wiringDrifted (spec: Spec, prefix: string, wires: WireSpec[]): Promise<boolean> {
    try {
      const topo = this.topology(spec, resolveVms(spec, prefix), prefix, wires)
      return diffEndpoints(await this.currentEndpoints(), topo.endpoints).length > 0
    } catch {
      return true
    }
  }

  /** Wires in force: the spec's, plus `wire connect`, minus `wire disconnect`. */
  wires (spec: Spec): WireSpec[] {
    const ch = JSON.parse(this.store.getMeta('wire-changes') ?? '{"added":[],"removed":[]}') as { added: WireSpec[], removed: string[] }
    const removed = new Set(ch.removed)
    const out = spec.network.wires.filter(w => !removed.has(wireKey(w)))
    for (const w of ch.added) if (!out.some(x => wireKey(x) === wireKey(w))) out.push(w)
    return out
  }

  /** Records a runtime wiring change (`wire connect` / `wire disconnect`). */
  setWireChange (w: WireSpec, connect: boolean): void {
    const ch = JSON.parse(this.store.getMeta('wire-changes') ?? '{"added":[],"removed":[]}') as { added: WireSpec[], removed: string[] }
    const k = wireKey(w)
    ch.added = ch.added.filter(x => wireKey(x) !== k)
    ch.removed = ch.removed.filter(x => x !== k)
    if (connect) ch.added.push(w)
    else ch.removed.push(k)
    this.store.setMeta('wire-changes', JSON.stringify(ch))
  }

  /** The topology of the wires in force, with VMs where `resolved` places them. */
  topology (spec: Spec, resolved: Record<string, ResolvedVm>, prefix: string, wires: WireSpec[] = this.wires(spec)): Topology {
    const ids = assignConnectorIds(wires, JSON.parse(this.store.getMeta('connector-ids') ?? '{}') as Record<string, number>)
    this.store.setMeta('connector-ids', JSON.stringify(ids))
    const hostAddress: Record<string, string> = {}
    for (const h of this.store.hosts()) if (h.record !== undefined) hostAddress[h.name] = h.record.address
    return compileTopology({
      spec: { ...spec, network: { ...spec.network, wires } },
      placement: Object.fromEntries(Object.values(resolved).map(r => [r.spec.name, r.host])),
      hostAddress,
      ids,
      prefix
    })
  }

  /** Each ready host's endpoints, read through its endpoint interface. */
  async currentEndpoints (): Promise<Record<string, EndpointConfig[]>> {
    const out: Record<string, EndpointConfig[]> = {}
    await Promise.all(this.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined).map(async h => {
      const ssh = await this.connect(h.name)
      out[h.name] = await readEndpoints(ssh, endpointRoot(h.record?.stateDir ?? ''))
    }))
    return out
  }

  /** Executes endpoint-interface writes over SSH, in order. */
  async applyEndpointWrites (writes: EndpointWrite[], progress: (ev: ProgressEvent) => void = this.progress): Promise<void> {
    for (const w of writes) {
      const h = this.store.host(w.host)
      if (h?.record === undefined) throw new NotFoundError('host', w.host)
      progress({ subject: `host ${w.host}`, phase: 'virtualwire', message: `echo "${w.line}" > ${w.file}` })
      await writeEndpoint(await this.connect(w.host), endpointRoot(h.record.stateDir), w)
    }
  }

  /** Makes every host's endpoints and switches match the topology. */
  private async syncWires (topo: Topology, prefix: string, progress: (ev: ProgressEvent) => void): Promise<void> {
    const writes = diffEndpoints(await this.currentEndpoints(), topo.endpoints)
    await this.applyEndpointWrites(writes, progress)
    await Promise.all(this.store.hosts().filter(h => h.status === 'ready').map(async h => {
      const switches = (topo.switches[h.name] ?? []).map(sw => ({ name: sw.name, bridge: sw.bridge, mtu: VW_MTU, ports: sw.ports.map(p => ({ port: p.port, endpointBridge: p.endpointBridge, link: p.link, peer: p.peer })) }))
      await (await this.agent(h.name)).ensureSwitches({ prefix, switches })
    }))
  }

  /**
   * Extenders: an encrypted OpenVPN tunnel between the gateway hosts of every pair of sites
   * that declare one, and routes on every host of those sites so traffic between sites
   * (VirtualWire connectors among it) takes the tunnel instead of the underlay.
   */
  private async syncExtenders (spec: Spec, prefix: string, progress: (ev: ProgressEvent) => void): Promise<void> {
    const sites = Object.keys(spec.network.extenders).filter(s => spec.sites[s]?.subnet !== undefined).sort()
    if (sites.length < 2) return
    const record = (h: string): HostRecord => {
      const r = this.store.host(h)?.record
      if (r === undefined) throw new NotFoundError('host', h)
      return r
    }
    const gateways: Record<string, string> = {}
    for (const s of sites) gateways[s] = spec.network.extenders[s]?.gateway ?? ''
    const tunnels: ExtenderTunnelPlan[] = []
    let index = 0
    for (let i = 0; i < sites.length; i++) {
      for (let j = i + 1; j < sites.length; j++) {
        const [sa, sb] = [sites[i] ?? '', sites[j] ?? '']
        const [ga, gb] = [record(gateways[sa] ?? ''), record(gateways[sb] ?? '')]
        const name = `${prefix}-ext${index}`
        const dev = extenderDevName(prefix, index)
        const port = DEFAULT_EXTENDER_PORT + index
        // Each end listens on its own address and sends to where the other is reachable from it (a public address across networks).
        const [toB, toA] = [peerAddress(ga, gb), peerAddress(gb, ga)]
        const at = (h: HostRecord, to: string): string => to !== h.address ? ` at ${to}` : ''
        progress({ subject: 'virtualwire', phase: 'extender', message: `${sa} (${ga.name}${at(ga, toA)}) <-> ${sb} (${gb.name}${at(gb, toB)}) over OpenVPN` })
        const a: ExtenderHostSide = { shell: sshShell(await this.connect(ga.name)), ip: ga.address, port, dev, runDir: `${ga.stateDir}/extender`, ...(toA !== ga.address ? { reachedAt: toA } : {}) }
        const b: ExtenderHostSide = { shell: sshShell(await this.connect(gb.name)), ip: gb.address, port, dev, runDir: `${gb.stateDir}/extender`, ...(toB !== gb.address ? { reachedAt: toB } : {}) }
        await connectExtender({ name, index, a, b })
        const t = extenderTunnel(index)
        tunnels.push({ name, a: { site: sa, dev, tunnelIp: t.a, endpoint: toA }, b: { site: sb, dev, tunnelIp: t.b, endpoint: toB } })
        index++
      }
    }
    const hostsBySite: Record<string, Array<{ name: string, address: string }>> = {}
    for (const h of this.store.hosts()) {
      if (h.record === undefined || !sites.includes(h.site)) continue
      ;(hostsBySite[h.site] ??= []).push({ name: h.name, address: h.record.address })
    }
    const plans = extenderRoutes({
      sites: Object.fromEntries(sites.map(s => [s, { subnet: spec.sites[s]?.subnet ?? '' }])),
      gateways,
      hostsBySite,
      tunnels
    })
    await Promise.all(Object.values(plans).map(async plan => { await applyExtenderRoutes(sshShell(await this.connect(plan.host)), plan) }))
  }

  /** Puts running guests' TAPs on the bridge their NIC belongs on (after a wiring change). */
  private async attachNics (topo: Topology, skip: Set<string> = new Set()): Promise<void> {
    const byHost = new Map<string, Array<{ tap: string, bridge: string, mtu?: number }>>()
    for (const vm of this.store.vms().filter(v => v.status === 'ready' && v.record !== undefined && !skip.has(v.name))) {
      const host = this.store.host(vm.host)?.record
      if (host === undefined) continue
      for (const n of vm.record?.nics ?? []) {
        const wired = topo.nics[vm.name]?.[n.name]
        const list = byHost.get(vm.host) ?? []
        list.push(wired !== undefined ? { tap: n.tap, bridge: wired.bridge, mtu: VW_MTU } : { tap: n.tap, bridge: host.guestBridge })
        byHost.set(vm.host, list)
      }
    }
    await Promise.all([...byHost].map(async ([host, taps]) => { await (await this.agent(host)).attach({ taps }) }))
  }

  /** Reconciles reality with the spec. Safe to interrupt and re-run. */
  async up (spec: Spec, opts: OperationOptions & { onPlan?: (lines: string[]) => void } = {}): Promise<UpResult> {
    this.store.lock()
    try {
      for (const line of await this.recoverMigrations(spec)) this.progress({ subject: 'migration', phase: 'recover', message: line })
      const p = await this.plan(spec)
      const lines = describePlan(p)
      opts.onPlan?.(lines)
      await this.apply(this.effectiveSpec(spec), p, opts)
      return { plan: lines, applied: p.actions.length }
    } finally {
      this.store.unlock()
    }
  }

  private async apply (spec: Spec, p: Plan, opts: OperationOptions): Promise<void> {
    const ctx = await this.context(spec)
    const signal = opts.signal
    const progress = (ev: ProgressEvent): void => { this.progress(ev); opts.onProgress?.(ev) }
    const byKind = (k: Action['kind']): Action[] => p.actions.filter(a => a.kind === k)
    const journal = (kind: string, subject: string, detail: Record<string, unknown> = {}): void => { this.store.journal(kind, subject, detail) }

    await allSettledOrThrow(byKind('vm.delete').map(async a => {
      if (a.kind !== 'vm.delete') return
      await this.deleteVm(a.name, progress)
      journal('vm.deleted', a.name, { host: a.host, reason: a.reason })
    }))
    await allSettledOrThrow(byKind('host.delete').map(async a => {
      if (a.kind !== 'host.delete') return
      await this.deleteHost(ctx, a.name, progress)
      journal('host.deleted', a.name, { reason: a.reason })
    }))
    for (const a of byKind('network.delete')) {
      if (a.kind !== 'network.delete') continue
      progress({ subject: `network ${a.driver}`, phase: 'delete', message: 'removing sites and WAN' })
      await this.driver(a.driver).destroyNetwork(ctx, { signal, onProgress: progress })
      this.store.deleteNetwork(a.driver)
    }
    for (const a of byKind('network.create')) {
      if (a.kind !== 'network.create') continue
      throwIfAborted(signal, 'up')
      this.store.putNetwork({ driver: a.driver, specHash: a.specHash, status: 'creating' })
      progress({ subject: `network ${a.driver}`, phase: 'create', message: 'creating sites and WAN' })
      await this.driver(a.driver).ensureNetwork(ctx, { signal, onProgress: progress })
      this.store.putNetwork({ driver: a.driver, specHash: a.specHash, status: 'ready' })
      journal('network.ready', a.driver)
    }

    // Guest images needed on hosts.
    // The builtin guest image: for guests that use it and for new hosts (KVM probe guest).
    const needsTiny = byKind('host.create').length > 0 ||
      byKind('vm.create').some(a => a.kind === 'vm.create' && spec.images[a.vm.spec.image]?.kind === 'builtin')
    const tiny = needsTiny ? await buildTinyImage({ signal, onProgress: progress }) : undefined

    await allSettledOrThrow(byKind('host.create').map(async a => {
      if (a.kind !== 'host.create') return
      const h = a.host
      const prev = this.store.host(h.name)
      const row: HostRow = { name: h.name, site: h.site, driver: h.driver, specHash: a.specHash, status: 'creating', bootstrapped: false }
      if (prev?.record !== undefined) row.record = prev.record
      this.store.putHost(row)
      this.dropHostConnections(h.name)
      progress({ subject: `host ${h.name}`, phase: 'provision', message: `creating with driver ${h.driver}` })
      row.record = await this.driver(h.driver).createHost(ctx, h, { signal, onProgress: progress })
      this.store.putHost(row)
      this.emit({ type: 'host.created', host: h.name, data: { site: h.site, driver: h.driver, address: row.record.address } })
      const record = row.record
      const bootstrap = async (ssh: SshConnection): Promise<BootstrapResult> => await bootstrapHost(record, ssh, {
        accel: h.hypervisor.accel,
        hypervisor: h.hypervisor.backend,
        ...(tiny !== undefined ? { image: { id: tiny.id, kernel: tiny.kernel, initrd: tiny.initrd } } : {}),
        ...(signal !== undefined ? { signal } : {}),
        onProgress: progress
      })
      let boot: BootstrapResult | undefined
      if (h.hypervisor.backend === 'xen' && h.driver !== 'local') {
        // A real server: boot it into Xen for one boot, keep Xen only once the agent answered
        // under it (docs/xen-real-hosts.md). A host already running Xen skips straight on.
        await bootHostIntoXen(h.name, async () => { this.dropHostConnections(h.name); return await this.connect(h.name, signal) }, {
          ...(signal !== undefined ? { signal } : {}),
          onProgress: progress,
          confirmAgent: async conn => { boot = await bootstrap(conn) }
        })
      }
      boot ??= await bootstrap(await this.connect(h.name, signal))
      this.agents.set(h.name, Promise.resolve(boot.agent))
      await ensureEndpointManager(await this.connect(h.name, signal), record.stateDir, ctx.prefix, { onProgress: progress })
      this.store.putHost({ ...row, status: 'ready', bootstrapped: true, accel: boot.accel.mode, accelReason: boot.accel.reason })
      journal('host.ready', h.name, { accel: boot.accel.mode, reason: boot.accel.reason, address: row.record.address })
      this.emit({ type: 'host.ready', host: h.name, data: { accel: boot.accel.mode, accelReason: boot.accel.reason, address: row.record.address } })
    }))

    // VirtualWire: endpoints and switches before the guests whose NICs join them.
    const wiresWanted = this.wires(spec)
    this.currentTopology = this.topology(spec, p.resolved, ctx.prefix, wiresWanted)
    for (const a of byKind('wires.sync')) {
      if (a.kind !== 'wires.sync') continue
      progress({ subject: 'virtualwire', phase: 'sync', message: `${a.wires} wire(s): ${a.reason}` })
      // Endpoint managers first (one that died is restarted and reconciles from its saved state).
      await Promise.all(this.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined).map(async h => {
        await ensureEndpointManager(await this.connect(h.name), h.record?.stateDir ?? '', ctx.prefix, { onProgress: progress })
      }))
      await this.syncExtenders(spec, ctx.prefix, progress)
      await this.syncWires(this.currentTopology, ctx.prefix, progress)
      // Guests (re)created by this plan get their bridges at creation.
      await this.attachNics(this.currentTopology, new Set(byKind('vm.create').map(x => x.kind === 'vm.create' ? x.vm.spec.name : '')))
      this.store.setMeta('wires-applied', a.wiringHash)
      journal('wires.synced', 'virtualwire', { wires: a.wires })
    }

    await allSettledOrThrow([...byKind('vm.create'), ...byKind('vm.balloon')].map(async a => {
      throwIfAborted(signal, 'up')
      if (a.kind === 'vm.balloon') {
        const agent = await this.agent(a.host)
        await agent.balloon(a.name, a.allocatedBytes)
        const row = this.store.vm(a.name)
        if (row?.record !== undefined) this.store.putVm({ ...row, specHash: a.specHash, record: { ...row.record, memory: { ...row.record.memory, allocatedBytes: a.allocatedBytes } } })
        journal('vm.ballooned', a.name, { allocatedBytes: a.allocatedBytes })
        return
      }
      if (a.kind !== 'vm.create') return
      await this.createVm(spec, a.vm, a.specHash, tiny, progress, signal)
      journal('vm.running', a.vm.spec.name, { host: a.vm.host })
    }))
  }

  private async createVm (spec: Spec, vm: ResolvedVm, specHash: string, tiny: TinyImage | undefined, progress: (ev: ProgressEvent) => void, signal?: AbortSignal): Promise<void> {
    const name = vm.spec.name
    const record = { host: vm.host, nics: vm.nics, memory: vm.spec.memory, cpus: vm.spec.cpus, image: vm.spec.image }
    this.store.putVm({ name, host: vm.host, specHash, status: 'creating', record })
    const agent = await this.agent(vm.host)
    const launch = await this.buildLaunch(spec, vm, vm.host, tiny, progress, signal)
    progress({ subject: `vm ${name}`, phase: 'boot', message: `booting on ${vm.host}` })
    this.emit({ type: 'vm.created', host: vm.host, vm: name, data: { requestedBytes: vm.spec.memory.requestedBytes, allocatedBytes: vm.spec.memory.allocatedBytes, cpus: vm.spec.cpus } })
    let info
    try {
      info = await agent.createVm(launch, signal)
    } catch (err) {
      this.store.putVm({ name, host: vm.host, specHash, status: 'failed', record, error: (err as Error).message })
      this.emit({ type: 'vm.failed', host: vm.host, vm: name, data: { error: (err as Error).message, code: (err as { code?: string }).code ?? 'SC_UNKNOWN' } })
      throw err
    }
    this.store.putVm({ name, host: vm.host, specHash, status: 'ready', record })
    this.emit({ type: 'vm.running', host: vm.host, vm: name, data: { accel: info.accel ?? 'tcg' } })
    progress({ subject: `vm ${name}`, phase: 'running', message: `running on ${vm.host}` })
  }

  /** What the agent on `host` needs to run `vm`, with its image files put on that host. */
  private async buildLaunch (spec: Spec, vm: ResolvedVm, host: string, tiny: TinyImage | undefined, progress: (ev: ProgressEvent) => void, signal?: AbortSignal, topo?: Topology): Promise<VmLaunch> {
    const hostRow = this.store.host(host)
    if (hostRow?.record === undefined) throw new NotFoundError('host', host)
    const ssh = await this.connect(host, signal)
    const img = spec.images[vm.spec.image]
    if (img === undefined) throw new NotFoundError('image', vm.spec.image)
    let image: VmLaunch['image']
    if (img.kind === 'builtin') {
      const t = tiny ?? await buildTinyImage({ signal, onProgress: progress })
      const f = await ensureImageOnHost(ssh, hostRow.record.stateDir, t.id, { vmlinuz: t.kernel, 'initrd.img': t.initrd }, { onProgress: progress })
      image = { kind: 'kernel', kernel: f.vmlinuz ?? '', initrd: f['initrd.img'] ?? '', readyMarker: 'SUPERCLOUD-GUEST-READY' }
    } else if (img.kind === 'kernel') {
      const files: Record<string, string> = { vmlinuz: img.kernel }
      if (img.initrd !== undefined) files['initrd.img'] = img.initrd
      const f = await ensureImageOnHost(ssh, hostRow.record.stateDir, `user-${img.name}`, files, { onProgress: progress })
      image = { kind: 'kernel', kernel: f.vmlinuz ?? '', ...(f['initrd.img'] !== undefined ? { initrd: f['initrd.img'] } : {}), ...(img.append !== undefined ? { append: img.append } : {}) }
    } else {
      const f = await ensureImageOnHost(ssh, hostRow.record.stateDir, `user-${img.name}`, { 'disk.qcow2': img.path }, { onProgress: progress })
      image = { kind: 'qcow2', path: f['disk.qcow2'] ?? '' }
    }
    const launch: VmLaunch = {
      name: vm.spec.name,
      cpus: vm.spec.cpus,
      memory: vm.spec.memory,
      image,
      disks: vm.spec.disks,
      nics: vm.nics.map(n => {
        const wired = (topo ?? this.currentTopology)?.nics[vm.spec.name]?.[n.name]
        return { name: n.name, mac: n.mac, tap: n.tap, address: n.address, ...(wired !== undefined ? { bridge: wired.bridge, mtu: VW_MTU } : {}) }
      }),
      bootTimeoutMs: bootTimeoutMs(this.opts.env)
    }
    if (vm.gateway !== undefined) launch.gateway = vm.gateway
    // Overdriver: a swap disk served by the host agent, with page repositories on peer hosts.
    const swap = await brokerSwapLaunch(spec, vm.spec, host, { agent: async h => await this.agent(h), address: h => this.store.host(h)?.record?.address })
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

  private async deleteVm (name: string, progress: (ev: ProgressEvent) => void): Promise<void> {
    const row = this.store.vm(name)
    if (row === undefined) return
    this.store.putVm({ ...row, status: 'destroying' })
    progress({ subject: `vm ${name}`, phase: 'delete', message: `removing from ${row.host}` })
    const host = this.store.host(row.host)
    if (host?.record !== undefined) {
      try {
        const agent = await this.agent(row.host)
        await agent.destroyVm(name, row.record?.nics ?? [])
      } catch (err) {
        // A host that is gone took its guests with it; anything else is a real failure.
        const ctx = await this.context()
        const health = await this.driver(host.driver).describeHost(ctx, host.record).catch(() => 'gone' as const)
        if (health === 'running') throw err
      }
    }
    // Disk images it left on a host it migrated away from.
    await this.dropDiskReuse(name)
    this.store.deleteVm(name)
    this.emit({ type: 'vm.deleted', host: row.host, vm: name, data: { reason: 'removed' } })
  }

  private async deleteHost (ctx: DriverContext, name: string, progress: (ev: ProgressEvent) => void, signal?: AbortSignal): Promise<void> {
    const row = this.store.host(name)
    if (row === undefined) return
    this.store.putHost({ ...row, status: 'destroying' })
    this.dropHostConnections(name)
    progress({ subject: `host ${name}`, phase: 'delete', message: `removing with driver ${row.driver}` })
    if (row.record !== undefined) await this.driver(row.driver).destroyHost(ctx, row.record, signal !== undefined ? { signal } : {})
    this.store.deleteHost(name)
    this.emit({ type: 'host.gone', host: name, data: { reason: 'removed' } })
  }

  /**
   * Live-migrates a VM to another host (RAM and local disks, no shared storage). Before the
   * switchover any failure or cancel leaves the VM running where it was.
   */
  async migrate (spec: Spec, vmName: string, to: string, opts: MigrateOptions = {}): Promise<MigrateResult> {
    if (this.store.vm(vmName)?.status === 'migrating' && !await this.migrationRunning(vmName)) {
      for (const line of await this.recoverMigrations(spec)) this.progress({ subject: 'migration', phase: 'recover', message: line })
    }
    const row = this.store.vm(vmName)
    if (row === undefined || spec.vms[vmName] === undefined) throw new NotFoundError('vm', vmName)
    const dest = this.store.host(to)
    if (dest?.record === undefined || spec.hosts[to] === undefined) throw new NotFoundError('host', to)
    if (row.host === to) throw new SupercloudError('SC_MIGRATE_SAME_HOST', `${vmName} already runs on ${to}`, { exitCode: 2 })
    if (dest.status !== 'ready') throw new SupercloudError('SC_MIGRATE_DEST_NOT_READY', `host ${to} is ${dest.status}, not ready`)
    const record = row.record
    if (record === undefined) throw new NotFoundError('vm record', vmName)
    const used = this.store.vms().filter(v => v.host === to && v.name !== vmName).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0)
    const cap = spec.hosts[to]?.memoryBytes ?? 0
    if (used + record.memory.allocatedBytes > cap) {
      throw new CapacityError(`${vmName} needs ${Math.round(record.memory.allocatedBytes / 1048576)}M but host ${to} has ${Math.round(Math.max(0, cap - used) / 1048576)}M free of ${Math.round(cap / 1048576)}M`)
    }
    const fromKind = spec.hosts[row.host]?.hypervisor.backend ?? 'qemu'
    const toKind = spec.hosts[to]?.hypervisor.backend ?? 'qemu'
    if (fromKind !== toKind) throw new SupercloudError('SC_MIGRATE_HYPERVISOR_MISMATCH', `${vmName} runs on ${row.host} under ${fromKind}; ${to} runs ${toKind}: a live migration needs the same hypervisor at both ends`, { exitCode: 2 })
    if (toKind === 'xen') {
      const nox = xenMigrationUnsupported(spec, spec.vms[vmName])
      if (nox !== undefined) throw new SupercloudError('SC_MIGRATE_UNSUPPORTED', `${nox} (host ${to} runs Xen)`, { exitCode: 2 })
      if (opts.mode !== undefined && opts.mode !== 'auto' && opts.mode !== 'precopy') throw new SupercloudError('SC_MIGRATION_MODE_UNSUPPORTED', `Xen migrates by pre-copy only (xl migrate); --mode ${opts.mode} is not available between Xen hosts`, { exitCode: 2 })
    }
    // Claim the VM: one migration at a time, and `up` leaves a migrating VM alone.
    const claimed = this.store.transaction(() => {
      const cur = this.store.vm(vmName)
      if (cur === undefined || cur.status === 'migrating') return false
      this.store.putVm({ ...cur, status: 'migrating' })
      return true
    })
    if (!claimed) throw new SupercloudError('SC_MIGRATION_IN_PROGRESS', `${vmName} is already being migrated`)
    const from = row.host
    const mode = opts.mode ?? 'auto'
    const say = (message: string): void => this.progress({ subject: `vm ${vmName}`, phase: 'migrate', message })
    // The migration's id: the source keeps its disk images under it, the destination's bitmaps carry it.
    const id = randomBytes(6).toString('hex')
    this.store.setMeta(`migration:${vmName}`, JSON.stringify({ from, to, mode, id, startedAt: new Date().toISOString() }))
    this.store.journal('migration.started', vmName, { from, to, mode, id })
    const report = reportMigration(this.events, { vm: vmName, from, to })
    const source = await this.agent(from)
    const target = await this.agent(to)
    let prepared = false
    let vwPre: EndpointWrite[] = []
    let vwSwitch: EndpointWrite[] = []
    let vwPost: EndpointWrite[] = []
    let vwUndo: EndpointWrite[] = []
    let vwCreated = false
    let armedRepoint: { fire: () => Promise<void>, disarm: () => Promise<void> } | undefined
    // The tasks at the switchover (migration/switchover.ts): set once the destination is prepared.
    let sw: Switchover<MigrationSwitchover> | undefined
    const prevReuse = this.diskReuse(vmName)
    try {
      const resolved: ResolvedVm = { spec: spec.vms[vmName], host: to, nics: record.nics }
      const gw = resolveVms(this.effectiveSpec(spec), this.store.prefix())[vmName]?.gateway
      if (gw !== undefined) resolved.gateway = gw
      // VirtualWire: the topology once the VM runs on `to`. Endpoints for it are created on `to`
      // first (pointing at the sister endpoints), sisters are re-pointed while both copies are
      // paused at the switch, and the old endpoints are destroyed once the VM runs on `to`.
      const prefix = this.store.prefix()
      const wires = this.wires(spec)
      const afterSpec = withOverrides(spec, { ...this.overrides(), [vmName]: this.overrideFor(spec, vmName, to) })
      const wired = wires.some(w => w.a.component === vmName || w.b.component === vmName)
      let topoAfter: Topology | undefined
      if (wired) {
        topoAfter = this.topology(afterSpec, resolveVms(afterSpec, prefix), prefix, wires)
        const before = await this.currentEndpoints()
        const writes = diffEndpoints(before, topoAfter.endpoints)
        vwPre = writes.filter(w => w.file === 'create')
        vwSwitch = writes.filter(w => /^\d+$/.test(w.file))
        // The inverse re-points, for a switch that QEMU does not complete after all.
        vwUndo = diffEndpoints(topoAfter.endpoints, before).filter(w => /^\d+$/.test(w.file))
        vwPost = writes.filter(w => w.file === 'destroy')
        say(`creating ${vwPre.length} endpoint(s) on ${to}`)
        await this.applyEndpointWrites(vwPre)
        vwCreated = true
      }
      const launch = await this.buildLaunch(spec, resolved, to, undefined, this.progress, opts.signal, topoAfter)
      // Disk reuse on return: `to` kept the disk images when the VM left it and this copy of the
      // VM recorded its writes since (bitmap): send only those blocks.
      let dirty: DirtyStatus | undefined
      if (prevReuse?.host === to) dirty = await source.dirtyStatus(vmName, prevReuse.id).catch(() => undefined)
      const reuse = decideReuse(prevReuse, to, dirty)
      if (reuse.message !== undefined) say(reuse.message)
      // The images kept on `to` are used (or deleted) by this attempt whatever its outcome.
      if (prevReuse?.host === to) this.setDiskReuse(vmName, undefined)
      if (reuse.reuse) this.store.setMeta(`migration:${vmName}`, JSON.stringify({ from, to, mode, id, reuse: reuse.id, startedAt: new Date().toISOString() }))
      say(`preparing ${to} to receive it`)
      const inc = await target.prepareIncoming({ launch, listenIp: dest.record.address, mode, ...(reuse.reuse ? { reuse: reuse.id } : {}) })
      prepared = true
      const reusedNodes = reuse.reuse ? inc.reusedNodes ?? [] : []
      if (reuse.reuse && reusedNodes.length === 0) say(`the disk left on ${to} is gone: copying the whole disk`)
      armedRepoint = wired ? await this.armEndpointWrites(vwSwitch) : undefined
      // At the switchover: the sister endpoints re-pointed, the destination's disks marked for a
      // return, the Overdriver sector table handed over (SWITCHOVER_HOOKS, in that order); the
      // source holds there while a hook that applies needs both copies paused.
      const atSwitch: MigrationSwitchover = {
        vm: vmName,
        from,
        to,
        id,
        say,
        source,
        target,
        ...(wired ? { wire: { repoint: vwSwitch, undo: vwUndo, ...(armedRepoint !== undefined ? { armed: armedRepoint } : {}), write: async (w: EndpointWrite[]) => { await this.applyEndpointWrites(w) } } } : {}),
        diskNodes: inc.diskNodes ?? [],
        swap: launch.swap !== undefined,
        outcome: { marked: false, repointFailed: false }
      }
      const switchover = new Switchover(SWITCHOVER_HOOKS, atSwitch)
      sw = switchover
      const stop = source.onEvent(ev => {
        if (ev.vm !== vmName) return
        if (ev.type === 'migration.progress') { opts.onProgress?.(ev as unknown as MigrationProgress); report.progress(ev as unknown as MigrationProgress) }
        if (ev.type === 'migration.switchover') {
          say('switching over')
          report.switchover()
          switchover.begin(async () => { await source.continueMigration(vmName) })
            .catch(() => { void source.cancelMigration(vmName).catch(() => {}) })
        }
      })
      const onAbort = (): void => { void source.cancelMigration(vmName).catch(() => {}) }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      let summary: MigrationSummary
      try {
        summary = await source.migrateOut({
          name: vmName,
          destIp: dest.record.address,
          migrationPort: inc.migrationPort,
          nbdPort: inc.nbdPort,
          mode,
          maxDowntimeMs: opts.maxDowntimeMs ?? 100,
          ...(opts.bandwidth !== undefined ? { bandwidth: opts.bandwidth } : {}),
          deadlineMs: opts.deadlineMs ?? 120000,
          holdAtSwitchover: switchover.holds,
          ...(inc.selfConfig !== undefined ? { selfConfig: inc.selfConfig } : {}),
          ...(reusedNodes.length > 0 && reuse.reuse ? { incremental: { id: reuse.id, nodes: reusedNodes } } : {})
        })
        await switchover.settle()
      } finally {
        stop()
        opts.signal?.removeEventListener('abort', onAbort)
        await armedRepoint?.disarm()
      }
      const st = await target.finishIncoming(vmName)
      if (st.state !== 'running') throw new SupercloudError('SC_MIGRATION_FAILED', `${vmName} is ${st.state} on ${to} after the switch`)
      // The VM runs on the destination: record it there, then remove the source copy.
      const { marked, repointFailed } = atSwitch.outcome
      const after = this.recordMove(spec, row, to)
      // The source keeps its disk images for a return (the destination records writes since the switch).
      await source.destroyVm(vmName, record.nics, marked ? id : undefined).catch(() => {})
      const obsolete = obsoleteAfter(prevReuse, to)
      if (obsolete !== undefined) await this.dropDiskReuse(vmName, obsolete)
      this.setDiskReuse(vmName, marked ? { host: from, id } : undefined)
      say(formatDiskSummary(summary, from))
      if (wired) {
        await this.applyEndpointWrites(vwPost)
        if (!repointFailed) this.store.setMeta('wires-applied', wiringHash(after.spec, wires, after.resolved))
      }
      this.store.journal('migration.completed', vmName, { from, to, ...summary })
      report.completed(summary)
      return { ...summary, from, to }
    } catch (err) {
      if (err instanceof CancelledError) report.cancelled(err.message)
      else report.failed(err as Error)
      if (sw?.switched !== true) {
        // Before the switch the source copy is authoritative: remove the destination copy.
        if (prepared) await target.destroyVm(vmName, record.nics).catch(() => {})
        await sw?.rollback()
        if (vwCreated) {
          for (const w of vwPre) await this.applyEndpointWrites([{ host: w.host, file: 'destroy', line: w.line.split(' ')[0] ?? '' }]).catch(() => {})
        }
        const st = await source.vmStatus(vmName).catch(() => undefined)
        this.store.putVm({ ...row, status: st?.state === 'running' ? 'ready' : 'failed', error: (err as Error).message })
        this.store.journal(err instanceof CancelledError ? 'migration.cancelled' : 'migration.failed', vmName, { from, to, error: (err as Error).message })
      } else {
        // The copy on `to` has no bitmap for an image left elsewhere.
        this.setDiskReuse(vmName, undefined)
        this.store.putVm({ ...row, host: to, status: 'failed', record: { ...record, host: to }, error: (err as Error).message })
        this.store.journal('migration.failed', vmName, { from, to, afterSwitchover: true, error: (err as Error).message })
      }
      throw err
    } finally {
      this.store.setMeta(`migration:${vmName}`, '')
    }
  }

  /**
   * Endpoint writes made ready ahead of a migration's switch: on each write's host a `cat` holds
   * the endpoint file open (`cat > <root>/<file>`, one SSH channel each), so `fire` only sends
   * the line (the endpoint interface applies a complete line during the write call) instead of
   * opening a channel and starting a shell at the switch. `disarm` closes them unwritten.
   * Resolves to undefined when a host cannot be armed (the caller then writes the usual way).
   */
  private async armEndpointWrites (writes: EndpointWrite[]): Promise<{ fire: () => Promise<void>, disarm: () => Promise<void> } | undefined> {
    const armed: Array<{ w: EndpointWrite, ch: ClientChannel, done: Promise<{ code: number | null, stderr: string }> }> = []
    const closeAll = async (): Promise<void> => {
      for (const a of armed) a.ch.end()
      await Promise.all(armed.map(async a => await a.done))
    }
    try {
      for (const w of writes) {
        const h = this.store.host(w.host)
        if (h?.record === undefined) throw new NotFoundError('host', w.host)
        const ch = await (await this.connect(w.host)).channel(`exec cat > ${shq(`${endpointRoot(h.record.stateDir)}/${w.file}`)}`)
        const done = new Promise<{ code: number | null, stderr: string }>(resolve => {
          let code: number | null = null
          let stderr = ''
          ch.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
          ch.on('data', () => {})
          ch.on('exit', (c: number | null) => { code = c })
          ch.on('close', () => { resolve({ code, stderr }) })
        })
        armed.push({ w, ch, done })
      }
    } catch {
      await closeAll()
      return undefined
    }
    let used = false
    return {
      fire: async () => {
        if (used) return
        used = true
        await Promise.all(armed.map(async a => {
          this.progress({ subject: `host ${a.w.host}`, phase: 'virtualwire', message: `echo "${a.w.line}" > ${a.w.file}` })
          a.ch.end(`${a.w.line}\n`)
          const r = await a.done
          if (r.code !== 0) throw new EndpointRefusedError(a.w.host, a.w, r.stderr.trim())
        }))
      },
      disarm: async () => {
        if (used) return
        used = true
        await closeAll()
      }
    }
  }

  /**
   * Finishes migrations whose controller died (kill -9, lost laptop): where the destination
   * copy runs and the source copy stopped, the move is completed; where the source still runs
   * and no migration is active on it, the destination copy is removed. A migration still
   * running on the hosts is left alone. Returns what it did, one line per VM.
   */
  async recoverMigrations (spec: Spec): Promise<string[]> {
    const done: string[] = []
    for (const row of this.store.vms().filter(v => v.status === 'migrating')) {
      const m = JSON.parse(this.store.getMeta(`migration:${row.name}`) || '{}') as { from?: string, to?: string }
      if (m.from === undefined || m.to === undefined || row.record === undefined) {
        this.store.putVm({ ...row, status: 'ready' })
        continue
      }
      const source = await this.agent(m.from)
      const target = await this.agent(m.to)
      if (await source.migrationActive(row.name).catch(() => false)) { done.push(`${row.name}: migration to ${m.to} still running on the hosts`); continue }
      const src = await source.vmStatus(row.name).catch(() => undefined)
      const dst = await target.vmStatus(row.name).catch(() => undefined)
      if (dst?.detail === 'running' && src?.detail !== 'running') {
        await target.finishIncoming(row.name).catch(() => {})
        this.recordMove(spec, row, m.to)
        await source.destroyVm(row.name, row.record.nics).catch(() => {})
        // Whether the destination marked its disks is unknown: no image is reused after this move.
        await this.dropDiskReuse(row.name)
        this.store.journal('migration.recovered', row.name, { outcome: 'completed', from: m.from, to: m.to })
        done.push(`${row.name}: finished its move to ${m.to} (the controller had stopped after the switch)`)
      } else {
        // Also when its QEMU is gone: its files and TAPs on the destination go too.
        if (dst !== undefined) await target.destroyVm(row.name, row.record.nics).catch(() => {})
        this.store.putVm({ ...row, status: src?.state === 'running' ? 'ready' : 'failed' })
        this.store.journal('migration.recovered', row.name, { outcome: 'rolled-back', from: m.from, to: m.to })
        done.push(`${row.name}: migration to ${m.to} rolled back; it runs on ${m.from}`)
      }
      this.store.setMeta(`migration:${row.name}`, '')
    }
    return done
  }

  private async migrationRunning (vmName: string): Promise<boolean> {
    const row = this.store.vm(vmName)
    if (row === undefined) return false
    // Another controller process is driving it (its CLI holds the source agent's migration).
    return await (await this.agent(row.host)).migrationActive(vmName).catch(() => false)
  }

  /** Asks the source host to cancel a running migration (from another process, e.g. a second terminal). */
  async cancelMigration (vmName: string): Promise<void> {
    const row = this.store.vm(vmName)
    if (row === undefined) throw new NotFoundError('vm', vmName)
    if (row.status !== 'migrating') throw new SupercloudError('SC_MIGRATION_NOT_RUNNING', `${vmName} is not migrating`, { exitCode: 2 })
    await (await this.agent(row.host)).cancelMigration(vmName)
  }

  /** Removes everything `up` made (also from a partial or interrupted `up`), then the state itself. */
  async down (opts: OperationOptions = {}): Promise<void> {
    this.store.lock()
    const ctx = await this.context()
    const progress = (ev: ProgressEvent): void => { this.progress(ev); opts.onProgress?.(ev) }
    await allSettledOrThrow(this.store.vms().map(async vm => { await this.deleteVm(vm.name, progress) }))
    await allSettledOrThrow(this.store.hosts().map(async h => { await this.deleteHost(ctx, h.name, progress, opts.signal) }))
    for (const n of this.store.networks()) {
      progress({ subject: `network ${n.driver}`, phase: 'delete', message: 'removing sites and WAN' })
      await this.driver(n.driver).destroyNetwork(ctx, opts)
      this.store.deleteNetwork(n.driver)
    }
    // Networks of drivers that never recorded one (interrupted before the first record) are cleaned
    // too: the local sites, and the ec2 security group and key pair (it finds them by tag).
    if (this.store.getMeta('context') !== undefined) {
      await this.driver('local').destroyNetwork(ctx, opts)
      if (Object.values(ctx.hosts ?? {}).some(h => h.driver === 'ec2')) await this.driver('ec2').destroyNetwork(ctx, opts)
    }
    this.close()
    await rm(this.dir, { recursive: true, force: true })
  }

  async status (): Promise<StatusReport> {
    const obs = await this.observe()
    const hosts: HostStatus[] = this.store.hosts().map(h => {
      const s: HostStatus = { name: h.name, site: h.site, driver: h.driver, status: h.status, health: obs.hosts[h.name] ?? 'unknown' }
      if (h.record !== undefined) s.address = h.record.address
      if (h.accel !== undefined) s.accel = h.accel
      if (h.accelReason !== undefined) s.accelReason = h.accelReason
      return s
    })
    const vms: VmStatus[] = this.store.vms().map(v => {
      const observed = obs.vms[v.name]
      const s: VmStatus = {
        name: v.name,
        host: v.host,
        status: v.status,
        state: (observed ?? 'unknown') as VmStatus['state'],
        addresses: v.record?.nics.map(n => n.address) ?? []
      }
      if (v.record !== undefined) { s.memory = v.record.memory; s.cpus = v.record.cpus }
      const h = this.store.host(v.host)
      if (h?.accel !== undefined) s.accel = h.accel
      if (v.error !== undefined) s.error = v.error
      return s
    })
    const r: StatusReport = { name: this.name, stateFile: this.store.path, hosts, vms }
    const prefix = this.store.getMeta('prefix')
    if (prefix !== undefined) r.prefix = prefix
    return r
  }

  /** The host record of a host, for `supercloud ssh`. */
  hostRecord (name: string): HostRecord {
    const row = this.store.host(name)
    if (row?.record === undefined) throw new NotFoundError('host', name)
    return row.record
  }

  /** Opens a raw byte stream to a VM's serial console. */
  async openConsole (vm: string): Promise<import('ssh2').ClientChannel> {
    const row = this.store.vm(vm)
    if (row === undefined) throw new NotFoundError('vm', vm)
    const agent = await this.agent(row.host)
    const path = await agent.consoleSocket(vm)
    const ssh = await this.connect(row.host)
    return await ssh.openUnixSocket(path)
  }

  close (): void {
    for (const h of [...this.ssh.keys()]) this.dropHostConnections(h)
    try { this.events.close() } catch { /* closed */ }
    try { this.store.close() } catch { /* closed */ }
  }
}

function namespaceTaken (prefix: string): boolean {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').some(l => l.startsWith(prefix))
  } catch {
    return false
  }
}

/** Waits for all; rethrows the first failure (others were already recorded in state). */
async function allSettledOrThrow (ps: Array<Promise<unknown>>): Promise<void> {
  const rs = await Promise.allSettled(ps)
  const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map(r => r.reason as Error)
  const real = failed.find(e => !(e instanceof CancelledError))
  if (real !== undefined) throw real
  if (failed[0] !== undefined) throw failed[0]
}

/**
 * Where `self`'s extender end sends to reach `peer`: the peer's public address when the two
 * are in different networks (HostRecord.reach: an EC2 instance seen from a local site, and
 * the local site's NAT address seen from the instance), else its site address.
 */
export function peerAddress (self: HostRecord, peer: HostRecord): string {
  return peer.reach !== undefined && peer.reach.network !== self.reach?.network ? peer.reach.publicAddress : peer.address
}
