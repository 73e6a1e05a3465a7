/**
 * Live migration of a VM between hosts (RAM and local disks, no shared storage), and the
 * recovery of migrations whose controller died. Before the switchover any failure or cancel
 * leaves the VM running where it was: the destination copy and the endpoints made for it are
 * removed. After the switch the destination's copy is the VM.
 *
 * One `migrate` is a MigrationRun: check, claim, prepare the wires, prepare the destination,
 * stream (with the switchover hooks of migration/switchover.ts), then complete or roll back.
 */
import { randomBytes } from 'node:crypto'
import type { MigrationProgress, MigrationSecurity } from '../../core/migration.ts'
import { AgentError, CancelledError, CapacityError, NotFoundError, SupercloudError, VmMovingError } from '../../core/errors.ts'
import type { Spec, VmSpec, WireSpec } from '../../core/spec.ts'
import type { MigrationSummary } from '../../drivers/qemu/migration.ts'
import { diffEndpoints, type EndpointWrite, type Topology } from '../../virtualwire/topology/compile.ts'
import type { VmLaunch } from '../agent/protocol.ts'
import { reportMigration, type MigrationReporter } from '../events/migration.ts'
import { decideReuse, formatDiskSummary, obsoleteAfter, type DirtyStatus, type DiskReuse, type ReuseDecision } from '../migration/disk-reuse.ts'
import { Switchover, SWITCHOVER_HOOKS, type MigrationSwitchover } from '../migration/switchover.ts'
import { keptNics, vmHash, wiringHash } from '../planner/plan.ts'
import { resolveVms, withOverrides, xenMigrationUnsupported, type PlacementOverride, type ResolvedVm } from '../planner/placement.ts'
import type { HostRow, VmRecord, VmRow } from '../state/store.ts'
import { takeMoveLockWith } from '../state/vm-lock.ts'
import type { LockWait } from '../state/wait.ts'
import type { ControllerCore } from './components.ts'
import { buildLaunch } from './launch.ts'
import { dropDiskReuse } from './reconcile.ts'
import type { HostAgent } from './sessions.ts'
import type { MigrateOptions, MigrateResult } from './types.ts'
import type { ArmedWrites, Wiring } from './wiring.ts'
import { CrossSiteMigrationError, crossSiteMoveProblems } from '../migration/cross-site.ts'
import { assertKeepsNetwork } from '../migration/site-network.ts'

type Incoming = Awaited<ReturnType<HostAgent['prepareIncoming']>>

/** The endpoint writes that move a wired VM's endpoints to the destination. */
interface WirePlan {
  /** The wires in force when the migration started. */
  wires: WireSpec[]
  topoAfter: Topology
  /** Endpoints created on the destination before the stream. */
  pre: EndpointWrite[]
  /** The sister endpoints' re-points, at the switch. */
  repoint: EndpointWrite[]
  /** Their inverse, for a switch that does not happen after all. */
  undo: EndpointWrite[]
  /** The old endpoints, destroyed once the VM runs on the destination. */
  post: EndpointWrite[]
}

export class Migrations<A extends HostAgent> {
  constructor (private readonly c: ControllerCore<A>, private readonly wiring: Wiring<A>) {}

  /** Placement changes made by `migrate`, which later `up`s keep (see planner/placement.ts). */
  overrides (): Record<string, PlacementOverride> {
    return this.c.state.overrides()
  }

  /** The spec as `up` applies it: the file plus the placement changes made by `migrate`. */
  effectiveSpec (spec: Spec): Spec {
    return withOverrides(spec, this.overrides())
  }

  /**
   * Takes the move lock of `vm` (state/vm-lock.ts): VmMovingError while another process moves
   * it, StateLockedError while an `up` or `down` runs. Returns its release.
   */
  async lockVm (vm: string, signal?: AbortSignal, wait?: LockWait): Promise<() => void> {
    return await takeMoveLockWith(this.c.store.locks, vm, { ...(signal !== undefined ? { signal } : {}), ...(wait !== undefined ? { wait } : {}) })
  }

  /** Live-migrates a VM to another host, holding its move lock throughout. */
  async migrate (spec: Spec, vmName: string, to: string, opts: MigrateOptions = {}): Promise<MigrateResult> {
    const release = await this.lockVm(vmName, opts.signal, opts.lockWait)
    try {
      if (this.c.store.vm(vmName)?.status === 'migrating' && !await this.running(vmName)) {
        for (const line of await this.recover(spec)) this.c.progress({ subject: 'migration', phase: 'recover', message: line })
      }
      const { row, vmSpec, record, dest } = this.check(spec, vmName, to, opts)
      this.claim(vmName)
      const run = new MigrationRun(this, this.c, this.wiring, { spec, vmSpec, row, record, dest, to, opts })
      return await run.execute()
    } finally {
      release()
    }
  }

  /** Refuses a migration that cannot work (nothing changed yet); returns what it moves and where. */
  private check (spec: Spec, vmName: string, to: string, opts: MigrateOptions): { row: VmRow, vmSpec: VmSpec, record: VmRecord, dest: HostRow & { record: NonNullable<HostRow['record']> } } {
    const row = this.c.store.vm(vmName)
    const vmSpec = spec.vms[vmName]
    if (row === undefined || vmSpec === undefined) throw new NotFoundError('vm', vmName)
    const dest = this.c.store.host(to)
    if (dest?.record === undefined || spec.hosts[to] === undefined) throw new NotFoundError('host', to)
    if (row.host === to) throw new SupercloudError('SC_MIGRATE_SAME_HOST', `${vmName} already runs on ${to}`, { exitCode: 2 })
    if (dest.status !== 'ready') throw new SupercloudError('SC_MIGRATE_DEST_NOT_READY', `host ${to} is ${dest.status}, not ready`)
    const record = row.record
    if (record === undefined) throw new NotFoundError('vm record', vmName)
    const used = this.c.store.vms().filter(v => v.host === to && v.name !== vmName).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0)
    const cap = spec.hosts[to]?.memoryBytes ?? 0
    if (used + record.memory.allocatedBytes > cap) {
      throw new CapacityError(`${vmName} needs ${Math.round(record.memory.allocatedBytes / 1048576)}M but host ${to} has ${Math.round(Math.max(0, cap - used) / 1048576)}M free of ${Math.round(cap / 1048576)}M`)
    }
    // The extender rule: no wire of this VM may cross sites in clear after the move.
    const placement = Object.fromEntries(this.c.store.vms().map(v => [v.name, v.host]))
    const wires = this.wiring.wires(spec)
    const crossing = crossSiteMoveProblems(spec, wires, placement, vmName, to)
    if (crossing.length > 0) throw new CrossSiteMigrationError(vmName, to, crossing)
    // The site-network rule: no NIC on its site's network may leave that site (it would keep its address on no network).
    assertKeepsNetwork(spec, wires, vmName, row.host, to, Object.fromEntries(record.nics.map(n => [n.name, n.address])))
    const fromKind = spec.hosts[row.host]?.hypervisor.backend ?? 'qemu'
    const toKind = spec.hosts[to]?.hypervisor.backend ?? 'qemu'
    if (fromKind !== toKind) throw new SupercloudError('SC_MIGRATE_HYPERVISOR_MISMATCH', `${vmName} runs on ${row.host} under ${fromKind}; ${to} runs ${toKind}: a live migration needs the same hypervisor at both ends`, { exitCode: 2 })
    if (toKind === 'xen') {
      const nox = xenMigrationUnsupported(spec, vmSpec)
      if (nox !== undefined) throw new SupercloudError('SC_MIGRATE_UNSUPPORTED', `${nox} (host ${to} runs Xen)`, { exitCode: 2 })
      if (opts.mode !== undefined && opts.mode !== 'auto' && opts.mode !== 'precopy') throw new SupercloudError('SC_MIGRATION_MODE_UNSUPPORTED', `Xen migrates by pre-copy only (xl migrate); --mode ${opts.mode} is not available between Xen hosts`, { exitCode: 2 })
    }
    return { row, vmSpec, record, dest: { ...dest, record: dest.record } }
  }

  /** Claims the VM: one migration at a time, and `up` leaves a migrating VM alone. */
  private claim (vmName: string): void {
    const claimed = this.c.store.transaction(() => {
      const cur = this.c.store.vm(vmName)
      if (cur === undefined || cur.status === 'migrating') return false
      this.c.store.putVm({ ...cur, status: 'migrating' })
      return true
    })
    if (!claimed) throw new SupercloudError('SC_MIGRATION_IN_PROGRESS', `${vmName} is already being migrated`)
  }

  /** The placement override that keeps `vm` on `to` until its spec `host:` line changes. */
  overrideFor (spec: Spec, vm: string, to: string): PlacementOverride {
    const specHost = spec.vms[vm]?.host
    return specHost !== undefined ? { host: to, specHost } : { host: to }
  }

  /**
   * Records that `row`'s VM now runs on `to` (after a migration, or its recovery): the
   * placement override, and its state row with the spec hash of its new placement.
   */
  recordMove (spec: Spec, row: VmRow, to: string): { spec: Spec, resolved: Record<string, ResolvedVm> } {
    const overrides = this.overrides()
    overrides[row.name] = this.overrideFor(spec, row.name, to)
    this.c.state.setOverrides(overrides)
    const eff = this.effectiveSpec(spec)
    const resolved = resolveVms(eff, this.c.store.prefix(), keptNics({ vms: this.c.store.vms() }))
    const moved = resolved[row.name]
    this.c.store.putVm({ ...row, host: to, status: 'ready', ...(row.record !== undefined ? { record: { ...row.record, host: to } } : {}), specHash: moved !== undefined ? vmHash(moved) : row.specHash })
    return { spec: eff, resolved }
  }

  /**
   * Finishes migrations whose controller died (kill -9, lost laptop): where the destination
   * copy runs and the source copy stopped, the move is completed; where the source still runs
   * and no migration is active on it, the destination copy is removed. A migration still
   * running on the hosts is left alone. Returns what it did, one line per VM.
   */
  async recover (spec: Spec): Promise<string[]> {
    const done: string[] = []
    for (const row of this.c.store.vms().filter(v => v.status === 'migrating')) {
      // A VM whose move lock another process holds is being moved by it: not interrupted.
      const release = await this.lockVm(row.name).catch((err: unknown) => { if (err instanceof VmMovingError) return err; throw err })
      if (release instanceof VmMovingError) { done.push(`${row.name}: being moved by running process ${release.pid}`); continue }
      try {
        const m = this.c.state.migration(row.name)
        if (m === undefined || row.record === undefined) { this.c.store.putVm({ ...row, status: 'ready' }); continue }
        const line = await this.recoverOne(spec, row, row.record, m.from, m.to)
        if (line === undefined) { done.push(`${row.name}: migration to ${m.to} still running on the hosts`); continue }
        done.push(line)
        this.c.state.setMigration(row.name, undefined)
      } finally {
        release()
      }
    }
    return done
  }

  /** Completes or rolls back one interrupted migration; undefined when it still runs on the hosts. */
  private async recoverOne (spec: Spec, row: VmRow, record: VmRecord, from: string, to: string): Promise<string | undefined> {
    const source = await this.c.sessions.agent(from)
    const target = await this.c.sessions.agent(to)
    if (await source.migrationActive(row.name).catch(() => false)) return undefined
    const src = await source.vmStatus(row.name).catch(() => undefined)
    const dst = await target.vmStatus(row.name).catch(() => undefined)
    if (dst?.detail === 'running' && src?.detail !== 'running') {
      await target.finishIncoming(row.name).catch(() => {})
      this.recordMove(spec, row, to)
      await source.destroyVm(row.name, record.nics).catch(() => {})
      // Whether the destination marked its disks is unknown: no image is reused after this move.
      await dropDiskReuse(this.c, row.name)
      this.c.store.journal('migration.recovered', row.name, { outcome: 'completed', from, to })
      return `${row.name}: finished its move to ${to} (the controller had stopped after the switch)`
    }
    // Also when its QEMU is gone: its files and TAPs on the destination go too.
    if (dst !== undefined) await target.destroyVm(row.name, record.nics).catch(() => {})
    this.c.store.putVm({ ...row, status: src?.state === 'running' ? 'ready' : 'failed' })
    this.c.store.journal('migration.recovered', row.name, { outcome: 'rolled-back', from, to })
    return `${row.name}: migration to ${to} rolled back; it runs on ${from}`
  }

  /** Whether another controller process drives the VM's migration (its CLI holds the source agent's migration). */
  private async running (vmName: string): Promise<boolean> {
    const row = this.c.store.vm(vmName)
    if (row === undefined) return false
    return await (await this.c.sessions.agent(row.host)).migrationActive(vmName).catch(() => false)
  }

  /** Asks the source host to cancel a running migration (from another process, e.g. a second terminal). */
  async cancel (vmName: string): Promise<void> {
    const row = this.c.store.vm(vmName)
    if (row === undefined) throw new NotFoundError('vm', vmName)
    if (row.status !== 'migrating') throw new SupercloudError('SC_MIGRATION_NOT_RUNNING', `${vmName} is not migrating`, { exitCode: 2 })
    await (await this.c.sessions.agent(row.host)).cancelMigration(vmName)
  }
}

interface RunInputs {
  spec: Spec
  vmSpec: VmSpec
  row: VmRow
  record: VmRecord
  dest: HostRow & { record: NonNullable<HostRow['record']> }
  to: string
  opts: MigrateOptions
}

/** One claimed migration, from its start to its completion or rollback. */
class MigrationRun<A extends HostAgent> {
  private readonly vm: string
  private readonly from: string
  private readonly to: string
  private readonly mode: NonNullable<MigrateOptions['mode']>
  /** The migration's id: the source keeps its disk images under it, the destination's bitmaps carry it. */
  private readonly id = randomBytes(6).toString('hex')
  /** The streams' credentials: a key for this migration alone (and, between Xen hosts, an x509 pair), given to both agents over SSH, never stored (docs/security.md). */
  private tls: MigrationSecurity
  private readonly startedAt = new Date().toISOString()
  private readonly prevReuse: DiskReuse | undefined
  private report!: MigrationReporter
  private source!: A
  private target!: A
  private wires?: WirePlan
  /** Endpoints for the VM exist on the destination (to remove on a rollback). */
  private wiresCreated = false
  /** The destination holds a copy (to remove on a rollback). */
  private prepared = false
  private armed?: ArmedWrites
  /** The tasks at the switchover (migration/switchover.ts): set once the destination is prepared. */
  private sw?: Switchover<MigrationSwitchover>
  /** What the switchover hooks did. */
  private outcome: MigrationSwitchover['outcome'] = { marked: false, repointFailed: false }

  constructor (private readonly m: Migrations<A>, private readonly c: ControllerCore<A>, private readonly wiring: Wiring<A>, private readonly i: RunInputs) {
    this.vm = i.row.name
    this.from = i.row.host
    this.to = i.to
    this.mode = i.opts.mode ?? 'auto'
    this.prevReuse = c.state.diskReuse(this.vm)
    this.tls = i.opts.clearText === true ? 'off' : { identity: `${this.from}.${this.id}`, key: randomBytes(32).toString('hex') }
  }

  private say (message: string): void {
    this.c.progress({ subject: `vm ${this.vm}`, phase: 'migrate', message })
  }

  async execute (): Promise<MigrateResult> {
    const { vm, from, to, mode, id } = this
    this.c.state.setMigration(vm, { from, to, mode, id, startedAt: this.startedAt })
    this.c.store.journal('migration.started', vm, { from, to, mode, id })
    this.report = reportMigration(this.c.events, { vm, from, to })
    // (Unreachable agents fail the migration here, before anything moved; the VM stays claimed
    // until the next command's recovery, as the migration record says.)
    this.source = await this.c.sessions.agent(from)
    this.target = await this.c.sessions.agent(to)
    try {
      // Xen's stream goes through socat, which speaks x509 TLS only: a pair drawn for this migration
      // (loaded here: node-forge stays off the CLI's start-up path).
      if (this.tls !== 'off' && [from, to].some(h => this.i.spec.hosts[h]?.hypervisor.backend === 'xen')) this.tls = { ...this.tls, x509: await (await import('../../core/tls-cert.ts')).migrationX509() }
      await this.prepareWires()
      const { launch, reuse, inc } = await this.prepareDestination()
      const summary = await this.stream(launch, reuse, inc)
      return await this.complete(summary)
    } catch (err) {
      this.fail(err as Error)
      await this.rollBack(err as Error)
      throw err
    } finally {
      this.c.state.setMigration(vm, undefined)
    }
  }

  /**
   * VirtualWire: the topology once the VM runs on `to`. Endpoints for it are created on `to`
   * first (pointing at the sister endpoints), sisters are re-pointed while both copies are
   * paused at the switch, and the old endpoints are destroyed once the VM runs on `to`.
   */
  private async prepareWires (): Promise<void> {
    const { spec } = this.i
    const wires = this.wiring.wires(spec)
    if (!wires.some(w => w.a.component === this.vm || w.b.component === this.vm)) return
    const prefix = this.c.store.prefix()
    const afterSpec = withOverrides(spec, { ...this.m.overrides(), [this.vm]: this.m.overrideFor(spec, this.vm, this.to) })
    const topoAfter = this.wiring.topology(afterSpec, resolveVms(afterSpec, prefix), prefix, wires)
    const before = await this.wiring.currentEndpoints()
    const writes = diffEndpoints(before, topoAfter.endpoints)
    this.wires = {
      wires,
      topoAfter,
      pre: writes.filter(w => w.file === 'create'),
      repoint: writes.filter(w => /^\d+$/.test(w.file)),
      undo: diffEndpoints(topoAfter.endpoints, before).filter(w => /^\d+$/.test(w.file)),
      post: writes.filter(w => w.file === 'destroy')
    }
    this.say(`creating ${this.wires.pre.length} endpoint(s) on ${this.to}`)
    await this.wiring.applyEndpointWrites(this.wires.pre)
    this.wiresCreated = true
  }

  /** The destination's launch, whether it reuses the disk images the VM left there, and its incoming copy. */
  private async prepareDestination (): Promise<{ launch: VmLaunch, reuse: ReuseDecision, inc: Incoming }> {
    const { spec, record, dest, opts } = this.i
    const { vm, to, prevReuse } = this
    const resolved: ResolvedVm = { spec: this.i.vmSpec, host: to, nics: record.nics }
    const gw = resolveVms(this.m.effectiveSpec(spec), this.c.store.prefix())[vm]?.gateway
    if (gw !== undefined) resolved.gateway = gw
    const launch = await buildLaunch(this.c, { spec, vm: resolved, host: to, progress: this.c.progress, ...(opts.signal !== undefined ? { signal: opts.signal } : {}), ...(this.wires !== undefined ? { topo: this.wires.topoAfter } : {}) })
    // Disk reuse on return: `to` kept the disk images when the VM left it and this copy of the
    // VM recorded its writes since (bitmap): send only those blocks.
    let dirty: DirtyStatus | undefined
    if (prevReuse?.host === to) dirty = await this.source.dirtyStatus(vm, prevReuse.id).catch(() => undefined)
    const reuse = decideReuse(prevReuse, to, dirty)
    if (reuse.message !== undefined) this.say(reuse.message)
    // The images kept on `to` are used (or deleted) by this attempt whatever its outcome.
    if (prevReuse?.host === to) this.c.state.setDiskReuse(vm, undefined)
    if (reuse.reuse) this.c.state.setMigration(vm, { from: this.from, to, mode: this.mode, id: this.id, reuse: reuse.id, startedAt: this.startedAt })
    this.say(`preparing ${to} to receive it`)
    const inc = await this.target.prepareIncoming({ launch, listenIp: dest.record.address, mode: this.mode, tls: this.tls, ...(reuse.reuse ? { reuse: reuse.id } : {}) })
    this.prepared = true
    return { launch, reuse, inc }
  }

  /**
   * The migration stream, with the switchover hooks: the sister endpoints re-pointed, the
   * destination's disks marked for a return, the Overdriver sector table handed over
   * (SWITCHOVER_HOOKS, in that order); the source holds there while a hook that applies needs
   * both copies paused. A cancel (signal) asks the source to cancel.
   */
  private async stream (launch: VmLaunch, reuse: ReuseDecision, inc: Incoming): Promise<MigrationSummary> {
    const { vm, source, opts } = { vm: this.vm, source: this.source, opts: this.i.opts }
    const reusedNodes = reuse.reuse ? inc.reusedNodes ?? [] : []
    if (reuse.reuse && reusedNodes.length === 0) this.say(`the disk left on ${this.to} is gone: copying the whole disk`)
    const switchover = this.switchover(launch, inc, this.wires !== undefined ? await this.wiring.arm(this.wires.repoint) : undefined)
    const stop = source.onEvent(ev => {
      if (ev.vm !== vm) return
      if (ev.type === 'migration.progress') { opts.onProgress?.(ev as unknown as MigrationProgress); this.report.progress(ev as unknown as MigrationProgress) }
      if (ev.type === 'migration.switchover') {
        this.say('switching over')
        this.report.switchover()
        switchover.begin(async () => { await source.continueMigration(vm) })
          .catch(() => { void source.cancelMigration(vm).catch(() => {}) })
      }
    })
    const onAbort = (): void => { void source.cancelMigration(vm).catch(() => {}) }
    opts.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const summary = await source.migrateOut({
        name: vm,
        destIp: this.i.dest.record.address,
        migrationPort: inc.migrationPort,
        nbdPort: inc.nbdPort,
        mode: this.mode,
        maxDowntimeMs: opts.maxDowntimeMs ?? 100,
        ...(opts.bandwidth !== undefined ? { bandwidth: opts.bandwidth } : {}),
        deadlineMs: opts.deadlineMs ?? 120000,
        holdAtSwitchover: switchover.holds,
        tls: this.tls,
        ...(inc.selfConfig !== undefined ? { selfConfig: inc.selfConfig } : {}),
        ...(reusedNodes.length > 0 && reuse.reuse ? { incremental: { id: reuse.id, nodes: reusedNodes } } : {})
      })
      await switchover.settle()
      return summary
    } finally {
      stop()
      opts.signal?.removeEventListener('abort', onAbort)
      await this.armed?.disarm()
    }
  }

  /** The switchover tasks of this migration (migration/switchover.ts). */
  private switchover (launch: VmLaunch, inc: Incoming, armed: ArmedWrites | undefined): Switchover<MigrationSwitchover> {
    this.armed = armed
    const w = this.wires
    const atSwitch: MigrationSwitchover = {
      vm: this.vm,
      from: this.from,
      to: this.to,
      id: this.id,
      say: message => { this.say(message) },
      source: this.source,
      target: this.target,
      ...(w !== undefined ? { wire: { repoint: w.repoint, undo: w.undo, ...(armed !== undefined ? { armed } : {}), write: async (ws: EndpointWrite[]) => { await this.wiring.applyEndpointWrites(ws) } } } : {}),
      diskNodes: inc.diskNodes ?? [],
      swap: launch.swap !== undefined,
      outcome: { marked: false, repointFailed: false }
    }
    this.sw = new Switchover(SWITCHOVER_HOOKS, atSwitch)
    this.outcome = atSwitch.outcome
    return this.sw
  }

  /**
   * A call on the destination's agent, made once more on a new connection when the first one was
   * lost: the hosts carry on without the controller's connection (QEMU finishes the switch), so a
   * lost connection is no failed migration until a new one says so. Without this, a connection
   * dropped after the switch recorded the VM as failed while it ran on the destination.
   */
  private async atTarget<T> (call: (a: A) => Promise<T>): Promise<T> {
    try {
      return await call(this.target)
    } catch (err) {
      if (!(err instanceof AgentError && err.code === 'SC_AGENT_GONE')) throw err
      this.c.sessions.drop(this.to)
      this.target = await this.c.sessions.agent(this.to)
      this.say(`the connection to ${this.to}'s agent was lost (${err.message}): asking again on a new one`)
      return await call(this.target)
    }
  }

  /** The VM runs on the destination: record it there, then remove the source copy. */
  private async complete (summary: MigrationSummary): Promise<MigrateResult> {
    const { vm, from, to, id } = this
    const { spec, row, record } = this.i
    const st = await this.atTarget(async a => await a.finishIncoming(vm))
    if (st.state !== 'running') throw new SupercloudError('SC_MIGRATION_FAILED', `${vm} is ${st.state} on ${to} after the switch`)
    const { marked, repointFailed } = this.outcome
    const after = this.m.recordMove(spec, row, to)
    // The source keeps its disk images for a return (the destination records writes since the switch).
    await this.source.destroyVm(vm, record.nics, marked ? id : undefined).catch(() => {})
    const obsolete = obsoleteAfter(this.prevReuse, to)
    if (obsolete !== undefined) await dropDiskReuse(this.c, vm, obsolete)
    this.c.state.setDiskReuse(vm, marked ? { host: from, id } : undefined)
    this.say(formatDiskSummary(summary, from))
    if (this.wires !== undefined) {
      await this.wiring.applyEndpointWrites(this.wires.post)
      if (!repointFailed) this.c.state.setWiresApplied(wiringHash(after.spec, this.wires.wires, after.resolved))
    }
    this.c.store.journal('migration.completed', vm, { from, to, ...summary })
    this.report.completed(summary)
    return { ...summary, from, to }
  }

  private fail (err: Error): void {
    if (err instanceof CancelledError) this.report.cancelled(err.message)
    else this.report.failed(err)
  }

  /** Before the switch: the source copy stays the VM, the destination's copy and endpoints go. After it: the VM is on `to`, failed. */
  private async rollBack (err: Error): Promise<void> {
    const { vm, from, to } = this
    const { row, record } = this.i
    if (this.sw?.switched === true) {
      // The copy on `to` has no bitmap for an image left elsewhere.
      this.c.state.setDiskReuse(vm, undefined)
      this.c.store.putVm({ ...row, host: to, status: 'failed', record: { ...record, host: to }, error: err.message })
      this.c.store.journal('migration.failed', vm, { from, to, afterSwitchover: true, error: err.message })
      return
    }
    if (this.prepared) await this.target.destroyVm(vm, record.nics).catch(() => {})
    await this.sw?.rollback()
    if (this.wiresCreated) {
      for (const w of this.wires?.pre ?? []) await this.wiring.applyEndpointWrites([{ host: w.host, file: 'destroy', line: w.line.split(' ')[0] ?? '' }]).catch(() => {})
    }
    const st = await this.source.vmStatus(vm).catch(() => undefined)
    this.c.store.putVm({ ...row, status: st?.state === 'running' ? 'ready' : 'failed', error: err.message })
    this.c.store.journal(err instanceof CancelledError ? 'migration.cancelled' : 'migration.failed', vm, { from, to, error: err.message })
  }
}
