/**
 * Reconcile: observe the hosts and guests the state says exist, plan against the spec
 * (planner/plan.ts, pure), and apply the plan's actions in order: deletes, networks, hosts,
 * wires, guests. Each action is recorded before it runs and again when it finished, so an
 * interrupted `up` or `down` is finished by the next run.
 */
import { rm } from 'node:fs/promises'
import type { DriverContext } from '../../drivers/cloud.ts'
import { HostKeyMismatchError, NotFoundError, throwIfAborted } from '../../core/errors.ts'
import type { OperationOptions, ProgressEvent } from '../../core/progress.ts'
import type { HostSpec, Spec } from '../../core/spec.ts'
import { hashHost } from '../specfile/hash.ts'
import type { GuestImageFiles } from '../bootstrap/blanket.ts'
import { assertCrossSite, type Topology } from '../../virtualwire/topology/compile.ts'
import { assertKeepsNetwork } from '../migration/site-network.ts'
import { plan, type Action, type Observation, type Plan, type PlanOptions } from '../planner/plan.ts'
import { place, type ResolvedVm } from '../planner/placement.ts'
import type { HostRow } from '../state/store.ts'
import type { ControllerCore } from './components.ts'
import { buildLaunch } from './launch.ts'
import type { HostAgent } from './sessions.ts'
import { allSettledOrThrow, settleLimitedOrThrow, type DownOptions } from './types.ts'
import { waitForLock } from '../state/wait.ts'
import { groupBy, mapLimited } from '../../core/concurrency.ts'
import type { Wiring } from './wiring.ts'
import { HostAccess } from './access.ts'

type Progress = (ev: ProgressEvent) => void
type ActionOf<K extends Action['kind']> = Extract<Action, { kind: K }>

/** One `apply`'s shared inputs. */
interface Run {
  spec: Spec
  plan: Plan
  ctx: DriverContext
  progress: Progress
  signal?: AbortSignal
  tiny?: GuestImageFiles
}

/** Live-migrates a VM as `up` moves it: `spec` is the effective spec with the VM as it runs now. */
export type MoveVm = (spec: Spec, vm: string, to: string, signal?: AbortSignal) => Promise<void>

/** How long a guest restarted by `up` may take to power down before it is stopped hard. */
const STOP_TIMEOUT_MS = 20000

export class Reconciler<A extends HostAgent> {
  constructor (private readonly c: ControllerCore<A>, private readonly wiring: Wiring<A>, private readonly move: MoveVm) {}

  /** Looks at the hosts and guests that the state says exist. */
  async observe (): Promise<Observation> {
    const ctx = await this.c.context()
    const obs: Observation = { hosts: {}, vms: {}, wantedAgentBuild: await this.c.hosts.wantedAgentBuild() }
    const vms = this.c.store.vms()
    const vmsOn = new Map(groupBy(vms, v => v.host).map(([host, list]) => [host, new Set(list.map(v => v.name))]))
    // At most hostConcurrency hosts at once (SSH handshakes and agent calls); a key mismatch stops it.
    await mapLimited(this.c.store.hosts(), this.c.hostConcurrency, async row => {
      if (row.record === undefined || row.status !== 'ready') return
      // A host presenting another key is not "unreachable" (to be repaired): it stops everything.
      const health = await this.c.driver(row.driver).describeHost(ctx, row.record).catch((err: unknown) => { if (err instanceof HostKeyMismatchError) throw err; return 'unreachable' as const })
      obs.hosts[row.name] = health
      if (health !== 'running') return
      try {
        const agent = await this.c.sessions.agent(row.name)
        // A VM's state is what its own host says: another host may still list a copy that is
        // gone (the destination of a rolled-back migration) and must not hide the running one.
        const here = vmsOn.get(row.name) ?? new Set<string>()
        for (const vm of await agent.listVms()) if (here.has(vm.name)) obs.vms[vm.name] = vm.state
        ;(obs.agentBuilds ??= {})[row.name] = (await agent.hello()).build
      } catch (err) {
        if (err instanceof HostKeyMismatchError) throw err
        obs.hosts[row.name] = 'unreachable'
      }
    })
    for (const vm of vms) {
      if (obs.vms[vm.name] === undefined && obs.hosts[vm.host] === 'running') obs.vms[vm.name] = 'absent'
    }
    return obs
  }

  /** The plan for `spec` (the file; `eff` with the placement changes made by `migrate`). */
  async plan (spec: Spec, eff: Spec, opts: PlanOptions = {}): Promise<Plan> {
    const wires = this.wiring.wires(spec)
    // The extender rule once placement is known (auto-placed VMs included): refused before anything is looked at or changed.
    assertCrossSite({ ...eff, network: { ...eff.network, wires } }, place(eff))
    const ctx = await this.c.context(spec)
    const obs = await this.observe()
    obs.wiringApplied = this.c.state.wiresApplied()
    if (wires.length > 0 && obs.wiringApplied !== '') obs.wiringDrift = await this.wiring.drifted(eff, ctx.prefix, wires)
    const p = plan(eff, this.c.store.snapshot(), ctx.prefix, obs, wires, opts)
    // The site-network rule for the moves `up` would make (a changed host:): refused before anything is changed.
    for (const a of actions(p, 'vm.move')) assertKeepsNetwork(eff, wires, a.name, a.from, a.to, Object.fromEntries((p.resolved[a.name]?.nics ?? []).map(n => [n.name, n.address])))
    return p
  }

  /** Applies `p` (planned for the effective spec `spec`). */
  async apply (spec: Spec, p: Plan, opts: OperationOptions): Promise<void> {
    const run: Run = {
      spec,
      plan: p,
      ctx: await this.c.context(spec),
      progress: ev => { this.c.progress(ev); opts.onProgress?.(ev) },
      ...(opts.signal !== undefined ? { signal: opts.signal } : {})
    }
    await this.perHost(actions(p, 'vm.delete'), a => a.host, async a => {
      await this.deleteVm(a.name, run.progress)
      this.c.store.journal('vm.deleted', a.name, { host: a.host, reason: a.reason })
    })
    // Hosts re-created under the same name go before their creation; removed ones after the moves off them.
    const recreated = new Set(actions(p, 'host.create').map(a => a.host.name))
    await this.deleteHosts(run, actions(p, 'host.delete').filter(a => recreated.has(a.name)))
    await this.applyNetworks(run)
    // The builtin guest image: for guests that use it and for new hosts (KVM probe guest).
    const needsTiny = actions(p, 'host.create').length > 0 ||
      [...actions(p, 'vm.create'), ...actions(p, 'vm.restart'), ...actions(p, 'vm.update')].some(a => spec.images[a.vm.spec.image]?.kind === 'builtin')
    if (needsTiny) run.tiny = await this.c.images.tiny({ signal: run.signal, onProgress: run.progress })
    await settleLimitedOrThrow(actions(p, 'host.create'), this.c.hostConcurrency, async a => { await this.createHost(run, a) })
    // Host firewalls before anything moves onto new hosts: the connectors as they are and as they will be.
    if (this.wiring.firewalls.enabled() && (actions(p, 'host.create').length > 0 || actions(p, 'vm.move').length > 0)) {
      const wires = this.wiring.wires(spec)
      const wanted = this.wiring.topology(spec, p.resolved, run.ctx.prefix, wires).endpoints
      await this.wiring.firewalls.sync(run.ctx, wires.length > 0 ? [wanted, await this.wiring.currentEndpoints()] : [], run.progress)
    }
    // Moves one at a time (each is a live migration with its disks), as it runs now: a restart below applies new sizes.
    for (const a of actions(p, 'vm.move')) {
      throwIfAborted(run.signal, 'up')
      run.progress({ subject: `vm ${a.name}`, phase: 'migrate', message: `moving by live migration ${a.from} -> ${a.to} with its disks` })
      await this.move({ ...spec, vms: { ...spec.vms, [a.name]: a.running } }, a.name, a.to, run.signal)
      this.c.store.journal('vm.moved', a.name, { from: a.from, to: a.to })
    }
    await this.deleteHosts(run, actions(p, 'host.delete').filter(a => !recreated.has(a.name)))
    await this.deleteNetworks(run)
    // VirtualWire: endpoints and switches before the guests whose NICs join them.
    const topo = this.wiring.topology(spec, p.resolved, run.ctx.prefix, this.wiring.wires(spec))
    await this.applyWires(run, topo)
    // Host firewalls with exactly the peers of the wires in force, before guests boot.
    await this.wiring.firewalls.sync(run.ctx, [topo.endpoints], run.progress)
    // Who may log in: the managed authorized_keys block on every ready host (revoked keys go).
    await new HostAccess(this.c).sync(spec, run.ctx, run.progress)
    await this.perHost([...actions(p, 'vm.create'), ...actions(p, 'vm.restart'), ...actions(p, 'vm.update'), ...actions(p, 'vm.balloon')], a => a.kind === 'vm.balloon' ? a.host : a.vm.host, async a => {
      throwIfAborted(run.signal, 'up')
      if (a.kind === 'vm.balloon') { await this.balloon(a); return }
      if (a.kind === 'vm.update') { await this.updateVm(run, a, topo); return }
      if (a.kind === 'vm.restart') await this.stopVm(run, a.vm)
      await this.createVm(run, a.vm, a.specHash, topo)
      this.c.store.journal(a.kind === 'vm.restart' ? 'vm.restarted' : 'vm.running', a.vm.spec.name, { host: a.vm.host, ...(a.kind === 'vm.restart' ? { reason: a.reason } : {}) })
    })
  }

  /**
   * Runs `fn` for every item, host by host: at most hostConcurrency hosts at once (each may
   * need a connection, image uploads, a boot), a host's items together. Every item is tried;
   * the first failure is rethrown (allSettledOrThrow).
   */
  private async perHost<T> (items: T[], hostOf: (item: T) => string, fn: (item: T) => Promise<void>): Promise<void> {
    await settleLimitedOrThrow(groupBy(items, hostOf), this.c.hostConcurrency, async ([, list]) => { await allSettledOrThrow(list.map(fn)) })
  }

  private async deleteHosts (run: Run, hosts: Array<ActionOf<'host.delete'>>): Promise<void> {
    await settleLimitedOrThrow(hosts, this.c.hostConcurrency, async a => {
      await this.deleteHost(run.ctx, a.name, run.progress)
      this.c.store.journal('host.deleted', a.name, { reason: a.reason })
    })
  }

  /** Stops a guest that is restarted on its disks (the agent keeps its directory and images). */
  private async stopVm (run: Run, vm: ResolvedVm): Promise<void> {
    const agent = await this.c.sessions.agent(vm.host)
    run.progress({ subject: `vm ${vm.spec.name}`, phase: 'stop', message: `stopping on ${vm.host} (its disks stay)` })
    // The builtin guest does not power down on request (nothing to flush but what the user synced): stopped at once.
    const img = run.spec.images[vm.spec.image]
    await agent.stopVm(vm.spec.name, img?.kind === 'builtin' ? 0 : STOP_TIMEOUT_MS)
  }

  private async deleteNetworks (run: Run): Promise<void> {
    for (const a of actions(run.plan, 'network.delete')) {
      run.progress({ subject: `network ${a.driver}`, phase: 'delete', message: 'removing sites and WAN' })
      await this.c.driver(a.driver).destroyNetwork(run.ctx, { signal: run.signal, onProgress: run.progress })
      this.c.store.deleteNetwork(a.driver)
    }
  }

  private async applyNetworks (run: Run): Promise<void> {
    for (const a of actions(run.plan, 'network.create')) {
      throwIfAborted(run.signal, 'up')
      this.c.store.putNetwork({ driver: a.driver, specHash: a.specHash, status: 'creating' })
      run.progress({ subject: `network ${a.driver}`, phase: 'create', message: 'creating sites and WAN' })
      await this.c.driver(a.driver).ensureNetwork(run.ctx, { signal: run.signal, onProgress: run.progress })
      this.c.store.putNetwork({ driver: a.driver, specHash: a.specHash, status: 'ready' })
      this.c.store.journal('network.ready', a.driver)
    }
  }

  /**
   * Creates, bootstraps and records one host that is not in the spec file (an evacuation's
   * replacement capacity, evacuation/replace-host.ts), as `up` creates the spec's hosts.
   */
  async addHost (spec: Spec, host: HostSpec, opts: OperationOptions): Promise<void> {
    const withHost = { ...spec, hosts: { ...spec.hosts, [host.name]: host } }
    const progress: Progress = ev => { this.c.progress(ev); opts.onProgress?.(ev) }
    const signal = opts.signal
    const run = { ctx: await this.c.context(withHost), progress, ...(signal !== undefined ? { signal } : {}), tiny: await this.c.images.tiny({ signal, onProgress: progress }) }
    await this.createHost(run, { kind: 'host.create', host, specHash: hashHost(host), reason: 'replacement capacity' })
  }

  private async createHost (run: Pick<Run, 'ctx' | 'progress' | 'signal' | 'tiny'>, a: ActionOf<'host.create'>): Promise<void> {
    const h = a.host
    const prev = this.c.store.host(h.name)
    const row: HostRow = { name: h.name, site: h.site, driver: h.driver, specHash: a.specHash, status: 'creating', bootstrapped: false }
    if (prev?.record !== undefined) row.record = prev.record
    this.c.store.putHost(row)
    this.c.sessions.drop(h.name)
    const opts = { onProgress: run.progress, ...(run.signal !== undefined ? { signal: run.signal } : {}) }
    run.progress({ subject: `host ${h.name}`, phase: 'provision', message: `creating with driver ${h.driver}` })
    const record = await this.c.driver(h.driver).createHost(run.ctx, h, { signal: run.signal, onProgress: run.progress })
    row.record = record
    this.c.store.putHost(row)
    this.c.emit({ type: 'host.created', host: h.name, data: { site: h.site, driver: h.driver, address: record.address } })
    const boot = await this.c.hosts.bootstrap(h, record, run.tiny, opts)
    this.c.sessions.adopt(h.name, boot.agent)
    await this.c.hosts.endpointManager(h.name, run.ctx.prefix, opts)
    this.c.store.putHost({ ...row, status: 'ready', bootstrapped: true, accel: boot.accel.mode, accelReason: boot.accel.reason })
    this.c.store.journal('host.ready', h.name, { accel: boot.accel.mode, reason: boot.accel.reason, address: record.address })
    this.c.emit({ type: 'host.ready', host: h.name, data: { accel: boot.accel.mode, accelReason: boot.accel.reason, address: record.address } })
  }

  private async applyWires (run: Run, topo: Topology): Promise<void> {
    for (const a of actions(run.plan, 'wires.sync')) {
      run.progress({ subject: 'virtualwire', phase: 'sync', message: `${a.wires} wire(s): ${a.reason}` })
      // Guests (re)created by this plan get their bridges at creation.
      await this.wiring.sync(run.spec, topo, run.ctx.prefix, new Set([...actions(run.plan, 'vm.create'), ...actions(run.plan, 'vm.restart')].map(x => x.vm.spec.name)), run.progress)
      this.c.state.setWiresApplied(a.wiringHash)
      this.c.store.journal('wires.synced', 'virtualwire', { wires: a.wires })
    }
  }

  private async balloon (a: ActionOf<'vm.balloon'>): Promise<void> {
    const agent = await this.c.sessions.agent(a.host)
    await agent.balloon(a.name, a.allocatedBytes)
    const row = this.c.store.vm(a.name)
    if (row?.record !== undefined) this.c.store.putVm({ ...row, specHash: a.specHash, record: { ...row.record, memory: { ...row.record.memory, allocatedBytes: a.allocatedBytes } } })
    this.c.store.journal('vm.ballooned', a.name, { allocatedBytes: a.allocatedBytes })
  }

  /**
   * Changes a running guest live (hot-plug, no reboot) and records its new sizes, disks, NICs and
   * what is plugged (a migration launches the same devices); `allocated` memory follows through
   * the balloon. Public for `supercloud resize`.
   */
  async updateVm (run: Pick<Run, 'spec' | 'progress' | 'signal' | 'tiny'>, a: ActionOf<'vm.update'>, topo?: Topology): Promise<void> {
    const name = a.vm.spec.name
    const row = this.c.store.vm(name)
    if (row?.record === undefined) throw new NotFoundError('vm', name)
    const agent = await this.c.sessions.agent(a.vm.host)
    const launch = await buildLaunch(this.c, { spec: run.spec, vm: a.vm, host: a.vm.host, progress: run.progress, ...(topo !== undefined ? { topo } : {}), ...(run.tiny !== undefined ? { tiny: run.tiny } : {}), ...(run.signal !== undefined ? { signal: run.signal } : {}) })
    run.progress({ subject: `vm ${name}`, phase: 'hotplug', message: `${a.reason} on ${a.vm.host}` })
    const { plugged } = await agent.updateVm(launch)
    const vm = a.vm.spec
    if (vm.memory.allocatedBytes !== row.record.memory.allocatedBytes) await agent.balloon(name, vm.memory.allocatedBytes)
    this.c.store.putVm({ ...row, specHash: a.specHash, status: 'ready', record: { ...row.record, cpus: vm.cpus, memory: vm.memory, disks: vm.disks.map(d => ({ name: d.name, sizeBytes: d.sizeBytes })), nics: a.vm.nics, plugged } })
    this.c.store.journal('vm.updated', name, { host: a.vm.host, reason: a.reason })
    run.progress({ subject: `vm ${name}`, phase: 'running', message: `running on ${a.vm.host}, changed live` })
  }

  /** Creates one guest: recorded 'creating', then 'ready', or 'failed' with the error when the agent could not run it. */
  private async createVm (run: Run, vm: ResolvedVm, specHash: string, topo: Topology): Promise<void> {
    const name = vm.spec.name
    const record = { host: vm.host, nics: vm.nics, memory: vm.spec.memory, cpus: vm.spec.cpus, image: vm.spec.image, disks: vm.spec.disks.map(d => ({ name: d.name, sizeBytes: d.sizeBytes })) }
    this.c.store.putVm({ name, host: vm.host, specHash, status: 'creating', record })
    const agent = await this.c.sessions.agent(vm.host)
    const launch = await buildLaunch(this.c, { spec: run.spec, vm, host: vm.host, topo, progress: run.progress, ...(run.tiny !== undefined ? { tiny: run.tiny } : {}), ...(run.signal !== undefined ? { signal: run.signal } : {}) })
    run.progress({ subject: `vm ${name}`, phase: 'boot', message: `booting on ${vm.host}` })
    this.c.emit({ type: 'vm.created', host: vm.host, vm: name, data: { requestedBytes: vm.spec.memory.requestedBytes, allocatedBytes: vm.spec.memory.allocatedBytes, cpus: vm.spec.cpus } })
    let info
    try {
      info = await agent.createVm(launch, run.signal)
    } catch (err) {
      this.c.store.putVm({ name, host: vm.host, specHash, status: 'failed', record, error: (err as Error).message })
      this.c.emit({ type: 'vm.failed', host: vm.host, vm: name, data: { error: (err as Error).message, code: (err as { code?: string }).code ?? 'SC_UNKNOWN' } })
      throw err
    }
    this.c.store.putVm({ name, host: vm.host, specHash, status: 'ready', record })
    this.c.emit({ type: 'vm.running', host: vm.host, vm: name, data: { accel: info.accel ?? 'tcg' } })
    run.progress({ subject: `vm ${name}`, phase: 'running', message: `running on ${vm.host}` })
  }

  async deleteVm (name: string, progress: Progress): Promise<void> {
    const row = this.c.store.vm(name)
    if (row === undefined) return
    this.c.store.putVm({ ...row, status: 'destroying' })
    progress({ subject: `vm ${name}`, phase: 'delete', message: `removing from ${row.host}` })
    const host = this.c.store.host(row.host)
    if (host?.record !== undefined) {
      try {
        const agent = await this.c.sessions.agent(row.host)
        await agent.destroyVm(name, row.record?.nics ?? [])
      } catch (err) {
        // A host that is gone took its guests with it; anything else is a real failure.
        const ctx = await this.c.context()
        const health = await this.c.driver(host.driver).describeHost(ctx, host.record).catch(() => 'gone' as const)
        if (health === 'running') throw err
      }
    }
    // Disk images it left on a host it migrated away from.
    await dropDiskReuse(this.c, name)
    this.c.store.deleteVm(name)
    this.c.emit({ type: 'vm.deleted', host: row.host, vm: name, data: { reason: 'removed' } })
  }

  async deleteHost (ctx: DriverContext, name: string, progress: Progress, signal?: AbortSignal): Promise<void> {
    const row = this.c.store.host(name)
    if (row === undefined) return
    this.c.store.putHost({ ...row, status: 'destroying' })
    this.c.sessions.drop(name)
    progress({ subject: `host ${name}`, phase: 'delete', message: `removing with driver ${row.driver}` })
    if (row.record !== undefined) await this.wiring.firewalls.remove(row.record).catch(() => { /* unreachable: nothing to remove from here */ })
    if (row.record !== undefined) await new HostAccess(this.c).remove(row.record).catch(() => { /* unreachable: the block stays */ })
    if (row.record !== undefined) await this.c.driver(row.driver).destroyHost(ctx, row.record, signal !== undefined ? { signal } : {})
    this.c.store.deleteHost(name)
    this.c.emit({ type: 'host.gone', host: name, data: { reason: 'removed' } })
  }

  /** Removes everything `up` made (also from a partial or interrupted `up`); `close` then stops the controller before its state goes. */
  async down (opts: DownOptions, close: () => void): Promise<void> {
    await waitForLock(() => { this.c.store.lock('down') }, opts.lockWait)
    const ctx = await this.c.context()
    const progress: Progress = ev => { this.c.progress(ev); opts.onProgress?.(ev) }
    await this.perHost(this.c.store.vms(), v => v.host, async vm => { await this.deleteVm(vm.name, progress) })
    await settleLimitedOrThrow(this.c.store.hosts(), this.c.hostConcurrency, async h => { await this.deleteHost(ctx, h.name, progress, opts.signal) })
    for (const n of this.c.store.networks()) {
      progress({ subject: `network ${n.driver}`, phase: 'delete', message: 'removing sites and WAN' })
      await this.c.driver(n.driver).destroyNetwork(ctx, opts)
      this.c.store.deleteNetwork(n.driver)
    }
    // Networks of drivers that never recorded one (interrupted before the first record) are cleaned
    // too: the local sites, and the ec2 security group and key pair (it finds them by tag).
    if (this.c.state.context() !== undefined) {
      await this.c.driver('local').destroyNetwork(ctx, opts)
      if (Object.values(ctx.hosts ?? {}).some(h => h.driver === 'ec2')) await this.c.driver('ec2').destroyNetwork(ctx, opts)
    }
    close()
    await rm(this.c.dir, { recursive: true, force: true })
  }
}

/** The plan's actions of one kind. */
function actions<K extends Action['kind']> (p: Plan, kind: K): Array<ActionOf<K>> {
  return p.actions.filter((a): a is ActionOf<K> => a.kind === kind)
}

/** Deletes the disk images `vm` left on the host in its reuse record (best effort) and forgets them. */
export async function dropDiskReuse<A extends HostAgent> (c: ControllerCore<A>, vm: string, host?: string): Promise<void> {
  const r = c.state.diskReuse(vm)
  const h = host ?? r?.host
  if (h !== undefined && c.store.host(h)?.record !== undefined) {
    try { await (await c.sessions.agent(h)).dropDeparted(vm) } catch { /* host gone or unreachable: its images went with it or wait for the next incoming */ }
  }
  if (r !== undefined && (host === undefined || r.host === host)) c.state.setDiskReuse(vm, undefined)
}
