/**
 * The controller: one supercloud's spec, state, drivers and host connections, and the
 * operations the CLI exposes (up, down, status, migrate, console). It only delegates: its
 * parts are reconcile.ts, migration.ts, wiring.ts, console.ts and status.ts, its collaborators
 * come in as one ControllerComponents object (createController in index.ts wires the real ones).
 */
import type { ClientChannel } from 'ssh2'
import type { DriverContext, HostHealth, HostRecord } from '../../drivers/cloud.ts'
import type { OperationOptions } from '../../core/progress.ts'
import type { HostSpec, Spec } from '../../core/spec.ts'
import type { SshConnection } from '../../core/ssh.ts'
import type { EndpointWrite, Topology } from '../../virtualwire/topology/compile.ts'
import type { EndpointConfig, WireSpec } from '../../virtualwire/types.ts'
import type { AgentClient } from '../agent/client.ts'
import type { EventHub } from '../events/hub.ts'
import { checkReplace, dataLoss, PlanDestroysDataError } from '../planner/changes.ts'
import { describePlan } from '../planner/changes.ts'
import type { Observation, Plan, PlanOptions } from '../planner/plan.ts'
import type { PlacementOverride, ResolvedVm } from '../planner/placement.ts'
import { checkPlannable } from '../specfile/plan-checks.ts'
import type { StateStore } from '../state/store.ts'
import { controllerCore, type ControllerComponents, type ControllerCore } from './components.ts'
import { hostRecord, openConsole } from './console.ts'
import { Migrations } from './migration.ts'
import { Reconciler } from './reconcile.ts'
import { resize, type ResizeRequest } from './resize.ts'
import type { HostAgent } from './sessions.ts'
import type { ControllerState } from './state.ts'
import { statusReport } from './status.ts'
import type { DownOptions, MigrateOptions, MigrateResult, StatusReport, UpOptions, UpResult } from './types.ts'
import { waitForLock } from '../state/wait.ts'
import { Wiring } from './wiring.ts'

export class Controller<A extends HostAgent = AgentClient> {
  readonly name: string
  readonly dir: string
  readonly store: StateStore
  /** Typed, sequenced events (persisted in the state store; `supercloud events`, `serve`). */
  readonly events: EventHub
  /** The state store's meta keys, typed. */
  readonly state: ControllerState
  private readonly c: ControllerCore<A>
  private readonly wiring: Wiring<A>
  private readonly reconciler: Reconciler<A>
  private readonly migrations: Migrations<A>

  constructor (components: ControllerComponents<A>) {
    this.c = controllerCore(components)
    this.name = components.name
    this.dir = components.dir
    this.store = components.store
    this.events = components.events
    this.state = this.c.state
    this.wiring = new Wiring(this.c)
    this.migrations = new Migrations(this.c, this.wiring)
    this.reconciler = new Reconciler(this.c, this.wiring, async (spec, vm, to, signal) => {
      await this.migrations.migrate(spec, vm, to, signal !== undefined ? { signal } : {})
    })
  }

  /** Driver context: from the spec when given (and remembered), else the remembered one. */
  async context (spec?: Spec): Promise<DriverContext> { return await this.c.context(spec) }
  /** SSH connection to a host (cached; reconnects when closed). */
  async connect (host: string, signal?: AbortSignal): Promise<SshConnection> { return await this.c.sessions.connect(host, signal) }
  /** The host agent's RPC client (cached). */
  async agent (host: string): Promise<A> { return await this.c.sessions.agent(host) }
  /** Looks at the hosts and guests that the state says exist. */
  async observe (): Promise<Observation> { return await this.reconciler.observe() }
  /** Placement changes made by `migrate`, which later `up`s keep (see planner/placement.ts). */
  overrides (): Record<string, PlacementOverride> { return this.migrations.overrides() }
  /** The spec as `up` applies it: the file plus the placement changes made by `migrate`. */
  effectiveSpec (spec: Spec): Spec { return this.migrations.effectiveSpec(spec) }
  async plan (spec: Spec, opts: PlanOptions = {}): Promise<Plan> {
    checkReplace(spec, this.store, opts.replace ?? [])
    const eff = this.effectiveSpec(spec)
    const p = await this.reconciler.plan(spec, eff, opts)
    await checkPlannable(eff, Object.fromEntries(Object.values(p.resolved).map(r => [r.spec.name, r.host])))
    return p
  }
  /** Wires in force: the spec's, plus `wire connect`, minus `wire disconnect`. */
  wires (spec: Spec): WireSpec[] { return this.wiring.wires(spec) }
  /** Records a runtime wiring change (`wire connect` / `wire disconnect`). */
  setWireChange (w: WireSpec, connect: boolean): void { this.wiring.setWireChange(w, connect) }
  /** The topology of the wires in force, with VMs where `resolved` places them. */
  topology (spec: Spec, resolved: Record<string, ResolvedVm>, prefix: string, wires?: WireSpec[]): Topology { return this.wiring.topology(spec, resolved, prefix, wires) }
  /** Each ready host's endpoints, read through its endpoint interface. */
  async currentEndpoints (): Promise<Record<string, EndpointConfig[]>> { return await this.wiring.currentEndpoints() }
  /** Executes endpoint-interface writes over SSH, in order. */
  async applyEndpointWrites (writes: EndpointWrite[]): Promise<void> { await this.wiring.applyEndpointWrites(writes) }

  /**
   * Reconciles reality with the spec. Safe to interrupt and re-run. A plan that destroys data
   * (a replace or delete of a VM's disks, of a host's VMs) runs only with `yes` or when
   * `confirm` agrees; otherwise nothing is changed and it throws PlanDestroysDataError.
   */
  async up (spec: Spec, opts: UpOptions = {}): Promise<UpResult> {
    await waitForLock(() => { this.store.lock('up') }, opts.lockWait)
    try {
      for (const line of await this.recoverMigrations(spec)) this.c.progress({ subject: 'migration', phase: 'recover', message: line })
      const p = await this.plan(spec, { ...(opts.repair === true ? { repair: true } : {}), ...(opts.replace !== undefined ? { replace: opts.replace } : {}) })
      const lines = describePlan(p)
      opts.onPlan?.(lines, p)
      const lost = dataLoss(p.changes)
      if (lost.length > 0 && opts.yes !== true) {
        const agreed = opts.confirm !== undefined ? await opts.confirm(lost) : false
        if (!agreed) throw new PlanDestroysDataError(lost, opts.confirm !== undefined)
      }
      await this.reconciler.apply(this.effectiveSpec(spec), p, opts)
      return { plan: lines, applied: p.actions.length }
    } finally {
      this.store.unlock()
    }
  }

  /**
   * Live-migrates a VM to another host (RAM and local disks, no shared storage). Before the
   * switchover any failure or cancel leaves the VM running where it was.
   */
  async migrate (spec: Spec, vmName: string, to: string, opts: MigrateOptions = {}): Promise<MigrateResult> { return await this.migrations.migrate(spec, vmName, to, opts) }
  /**
   * Takes the move lock of a VM (state/vm-lock.ts), as `migrate` does for its run, for a caller
   * that moves it in several steps (serve's Overdriver loop): VmMovingError while another process
   * moves it, StateLockedError while an `up` or `down` runs. Returns its release.
   */
  async lockVm (vm: string, signal?: AbortSignal): Promise<() => void> { return await this.migrations.lockVm(vm, signal) }
  /** Creates, bootstraps and records a host that is not in the spec file (an evacuation's replacement capacity). */
  async addHost (spec: Spec, host: HostSpec, opts: OperationOptions = {}): Promise<void> { await this.reconciler.addHost(spec, host, opts) }
  /** Finishes migrations whose controller died; one line per VM on what it did. */
  async recoverMigrations (spec: Spec): Promise<string[]> { return await this.migrations.recover(spec) }
  /** Asks the source host to cancel a running migration (from another process, e.g. a second terminal). */
  async cancelMigration (vmName: string): Promise<void> { await this.migrations.cancel(vmName) }

  /**
   * Changes a running VM's vCPUs and memory live (no reboot) and records them: an `up` whose spec
   * says the same size changes nothing. Refused (nothing changed) when it cannot be live.
   */
  async resize (spec: Spec, vm: string, r: ResizeRequest, opts: OperationOptions = {}): Promise<string> {
    this.store.lock()
    try {
      const progress = opts.onProgress ?? (() => {})
      return await resize({
        store: this.store,
        plan: async eff => await this.reconciler.plan(spec, this.effectiveSpec(eff)),
        update: async (eff, a) => { await this.reconciler.updateVm({ spec: this.effectiveSpec(eff), progress: ev => { this.c.progress(ev); progress(ev) }, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) }, a) }
      }, spec, vm, r)
    } finally {
      this.store.unlock()
    }
  }

  /** Removes everything `up` made (also from a partial or interrupted `up`), then the state itself. */
  async down (opts: DownOptions = {}): Promise<void> { await this.reconciler.down(opts, () => { this.store.destroy(); this.close() }) }

  async status (): Promise<StatusReport> {
    const obs = await this.observe()
    return statusReport(this.name, this.store, obs, this.state.prefix())
  }

  /** What the host's driver says of it now (undefined: no such host in the state). */
  async hostHealth (name: string): Promise<HostHealth | undefined> {
    const row = this.store.host(name)
    if (row?.record === undefined) return undefined
    return await this.c.driver(row.driver).describeHost(await this.c.context(), row.record)
  }

  /**
   * Forgets a host its provider took away (a reclaimed spot instance): with no VM left on it, its
   * row is deleted (`status` no longer lists it; the next `up` creates it again when the spec
   * still has it); with VMs left (they were lost with it), the row stays, marked failed.
   */
  forgetHost (name: string, reason: string): 'deleted' | 'failed' {
    const row = this.store.host(name)
    if (row === undefined) return 'deleted'
    this.c.sessions.drop(name)
    const left = this.store.vms().filter(v => v.host === name).map(v => v.name)
    if (left.length === 0) this.store.deleteHost(name)
    else this.store.putHost({ ...row, status: 'failed' })
    this.store.journal('host.gone', name, { reason, ...(left.length > 0 ? { lostVms: left } : {}) })
    this.c.emit({ type: 'host.gone', host: name, data: { reason: left.length > 0 ? `${reason}; its VMs ${left.join(', ')} were lost with it` : reason } })
    return left.length === 0 ? 'deleted' : 'failed'
  }

  /** The host record of a host, for `supercloud ssh`. */
  hostRecord (name: string): HostRecord { return hostRecord(this.c, name) }
  /** Opens a raw byte stream to a VM's serial console. */
  async openConsole (vm: string): Promise<ClientChannel> { return await openConsole(this.c, vm) }

  close (): void {
    this.c.sessions.close()
    try { this.events.close() } catch { /* closed */ }
    try { this.store.close() } catch { /* closed */ }
  }
}
