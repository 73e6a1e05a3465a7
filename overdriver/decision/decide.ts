/**
 * The overload controller (seed 002 §6.2, pure): once per monitoring interval, from each VM's
 * paging rate, decide what to do. Cooperative swap first, as soon as an overload starts
 * (only for VMs allocated less than they requested: otherwise overload is the VM's own
 * business); migration when the overload becomes sustained; the profiler learns from
 * transient overloads that ended. The state is plain data so the agent can persist it and
 * resume after a restart.
 */
import { DEFAULT_ARRIVAL_GRACE_INTERVALS, DEFAULT_INITIAL_THRESHOLD_MS, DEFAULT_INTERVAL_MS, DEFAULT_MIGRATION_TIMEOUT_MS, DEFAULT_OVERLOAD_OPS_PER_SEC, DEFAULT_PROFILER_BASE_COUNT, DEFAULT_QUIET_INTERVALS, DEFAULT_WINDOW_SIZE, DEFAULT_WINDOW_SUSTAINED } from '../constants.ts'
import type { OverdriverAction, OverdriverEvent } from './events.ts'
import { classifyInterval } from './interval.ts'
import { Profiler, type ProfilerState } from './profiler.ts'
import { OverloadWindow, type OverloadWindowState } from './window.ts'

/** The parts of the policy the controller uses (see policy.ts for the spec section). */
export type { OverloadPolicy as ControllerPolicy } from '../../core/spec.ts'
import type { OverloadPolicy as ControllerPolicy } from '../../core/spec.ts'

export const DEFAULT_CONTROLLER_POLICY: ControllerPolicy = {
  intervalMs: DEFAULT_INTERVAL_MS,
  overloadOpsPerSec: DEFAULT_OVERLOAD_OPS_PER_SEC,
  window: { size: DEFAULT_WINDOW_SIZE, sustained: DEFAULT_WINDOW_SUSTAINED },
  initialThresholdMs: DEFAULT_INITIAL_THRESHOLD_MS,
  adaptive: { enabled: true, baseCount: DEFAULT_PROFILER_BASE_COUNT },
  quietIntervals: DEFAULT_QUIET_INTERVALS
}

export interface VmView {
  name: string
  host: string
  requestedBytes: number
  allocatedBytes: number
  /**
   * The VM is still moving in (an incoming migration whose arrival was not reported yet): its
   * swap I/O is the move's, not its paging. Rates are ignored and its history stays empty.
   */
  arriving?: boolean
}

export interface HostView {
  name: string
  /** Memory this host keeps free as a migration target (the excess space manager's share). */
  migrationSpaceBytes: number
  /**
   * Why VMs with a swap disk cannot live-migrate to or from this host (every VM Overdriver
   * watches has one), e.g. a Xen host; undefined when they can. Such a host is neither a
   * migration source nor a target: its overloads are met with cooperative swap only.
   */
  noMigration?: string
  /**
   * VMs that may not move to this host, each with why (a VM with a NIC on its site network and
   * this host in another site: blanket-manager/migration/site-network.ts). Skipped as its target.
   */
  refuses?: Record<string, string>
}

export interface ControllerInput {
  /** End of the interval just measured, ms. */
  atMs: number
  /** VM → paging operations per second during the interval. VMs without a rate are skipped. */
  rates: Record<string, number>
  vms: VmView[]
  hosts: HostView[]
  /** Whether some page repository has room for this VM's pages; default true. */
  repositoriesAvailable?: boolean | Record<string, boolean>
  /** Migrations that finished since the last call, named by the VM that moved or the one it relieved. */
  migrated?: string[]
  /** Migrations that failed or were cancelled since the last call (named like `migrated`); decided again while still sustained. */
  migrationFailed?: string[]
  /**
   * VMs that arrived on this host (incoming migration finished, balloon at the new allocation)
   * or whose allocation changed since the last call: their history starts fresh, and the next
   * `arrivalGraceIntervals` intervals are not observed.
   */
  arrived?: string[]
}

export interface VmControlState {
  window: OverloadWindowState
  profiler: ProfilerState
  coopSwap: boolean
  /** Set while a migration decided for this (overloaded) VM is under way. */
  migrating?: { move: string, target: string, sinceMs?: number }
  /** Rates of intervals ending before this time are not observed (grace after arrival). */
  graceUntilMs?: number
  /** migration.blocked was already reported in this episode. */
  blockedReported?: boolean
}

export interface ControllerState {
  vms: Record<string, VmControlState>
}

export interface Decision {
  state: ControllerState
  actions: OverdriverAction[]
  events: OverdriverEvent[]
}

export function emptyControllerState (): ControllerState {
  return { vms: {} }
}

/**
 * The state without any migration marked under way (a controller that (re)configures the loop
 * knows of none: one it did not start is not going to be reported). Windows and profiles stay,
 * so a VM still in a sustained overload gets a migration decided again at its next interval.
 */
export function forgetMigrations (state: ControllerState): ControllerState {
  const vms: Record<string, VmControlState> = {}
  for (const [name, s] of Object.entries(state.vms)) {
    const c = structuredClone(s)
    delete c.migrating
    vms[name] = c
  }
  return { vms }
}

/** A migration that relieves `relieves`: move `move` to `target`, copying `bytes`. */
export interface MigrationChoice {
  move: string
  target: string
  relieves: string
  bytes: number
  growToBytes: number
  reason: string
}

/**
 * Which migration relieves `vm` (sustained overload) at the least network cost:
 *  - the VM itself to a host with room for its full requested memory, or
 *  - a co-located VM (not itself overloaded) to a host with room for its allocation, when
 *    the memory that frees on the shared host covers the overloaded VM's shortfall;
 * the one copying fewer bytes wins; on a tie the overloaded VM moves. A host that refuses the
 * VM to move (HostView.refuses) is not its target. Targets are chosen
 * best-fit (least sufficient room, then name) to limit fragmentation of the excess space.
 * Returns a string saying why not when nothing fits.
 */
export function chooseMigration (vm: VmView, vms: VmView[], hosts: HostView[], busy: ReadonlySet<string> = new Set()): MigrationChoice | string {
  const need = vm.requestedBytes - vm.allocatedBytes
  if (need <= 0) return `${vm.name} already has all the memory it requested`
  const home = hosts.find(h => h.name === vm.host)
  if (home?.noMigration !== undefined) return `VMs on ${vm.host} do not live-migrate (${home.noMigration}): ${vm.name} stays on cooperative swap`
  const homeSpace = home?.migrationSpaceBytes ?? 0
  // The least room that suffices, then the name: one pass (a sort per candidate grew with hosts × log hosts × VMs).
  const bestFit = (mover: string, bytes: number): HostView | undefined => {
    let best: HostView | undefined
    for (const h of hosts) {
      if (h.name === vm.host || h.noMigration !== undefined || h.migrationSpaceBytes < bytes || h.refuses?.[mover] !== undefined) continue
      if (best === undefined || h.migrationSpaceBytes < best.migrationSpaceBytes || (h.migrationSpaceBytes === best.migrationSpaceBytes && h.name.localeCompare(best.name) < 0)) best = h
    }
    return best
  }
  const options: MigrationChoice[] = []
  const self = bestFit(vm.name, vm.requestedBytes)
  if (self !== undefined) {
    options.push({ move: vm.name, target: self.name, relieves: vm.name, bytes: vm.allocatedBytes, growToBytes: vm.requestedBytes, reason: `${vm.name} moves to ${self.name}, which has room for its requested ${vm.requestedBytes} bytes` })
  }
  for (const u of vms) {
    if (u.name === vm.name || u.host !== vm.host || busy.has(u.name)) continue
    if (homeSpace + u.allocatedBytes < need) continue
    const t = bestFit(u.name, u.allocatedBytes)
    if (t === undefined) continue
    options.push({ move: u.name, target: t.name, relieves: vm.name, bytes: u.allocatedBytes, growToBytes: vm.requestedBytes, reason: `co-located ${u.name} (${u.allocatedBytes} bytes) moves to ${t.name}, freeing room on ${vm.host} for ${vm.name} to grow by ${need} bytes` })
  }
  options.sort((a, b) => a.bytes - b.bytes || (a.move === vm.name ? -1 : b.move === vm.name ? 1 : a.move.localeCompare(b.move)))
  const refused = hosts.filter(h => h.name !== vm.host && h.refuses?.[vm.name] !== undefined).map(h => `${h.name}: ${h.refuses?.[vm.name] ?? ''}`)
  return options[0] ?? `no host has ${vm.requestedBytes} bytes of migration space for ${vm.name}, and no co-located VM can move to free ${need} bytes on ${vm.host}${refused.length > 0 ? ` (not a target for ${vm.name}: ${refused.join('; ')})` : ''}`
}

/**
 * One control step. Does not modify `state`; returns the next state with the actions to
 * carry out and the events that describe what changed, in VM name order.
 */
export function decide (state: ControllerState, input: ControllerInput, policy: ControllerPolicy = DEFAULT_CONTROLLER_POLICY): Decision {
  const next: ControllerState = { vms: {} }
  const actions: OverdriverAction[] = []
  const events: OverdriverEvent[] = []
  const hosts = input.hosts.map(h => ({ ...h }))
  const migrated = new Set(input.migrated ?? [])
  const failed = new Set(input.migrationFailed ?? [])
  const arrived = new Set(input.arrived ?? [])
  const byName = new Map(input.vms.map(v => [v.name, v]))
  // Co-located VMs per host (chooseMigration considers only those): not every VM for every decision.
  const vmsOn = new Map<string, VmView[]>()
  for (const v of input.vms) { const list = vmsOn.get(v.host); if (list === undefined) vmsOn.set(v.host, [v]); else list.push(v) }
  const hostByName = new Map(hosts.map(h => [h.name, h]))
  const timeoutMs = policy.migrationTimeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS
  const graceMs = (policy.arrivalGraceIntervals ?? DEFAULT_ARRIVAL_GRACE_INTERVALS) * policy.intervalMs
  /** A decided migration nobody reported within the timeout: counts as failed. */
  const expired = (m: { sinceMs?: number }): boolean => m.sinceMs !== undefined && input.atMs - m.sinceMs > timeoutMs
  // VMs already moving (as the relieved VM or as the one that moves) are not chosen again.
  const busy = new Set<string>()
  for (const [name, s] of Object.entries(state.vms)) {
    const m = s.migrating
    if (m !== undefined && !migrated.has(name) && !migrated.has(m.move) && !failed.has(name) && !failed.has(m.move) && !arrived.has(name) && !expired(m)) { busy.add(name); busy.add(m.move) }
  }
  const reposFor = (vm: string): boolean => {
    const r = input.repositoriesAvailable
    if (r === undefined) return true
    return typeof r === 'boolean' ? r : r[vm] === true
  }

  for (const vm of [...input.vms].sort((a, b) => a.name.localeCompare(b.name))) {
    const prev = state.vms[vm.name]
    const window = new OverloadWindow({ size: policy.window.size, sustainedCount: policy.window.sustained, intervalMs: policy.intervalMs, quietIntervals: policy.quietIntervals }, prev?.window)
    const profiler = new Profiler({ initialThresholdMs: policy.initialThresholdMs, adaptive: policy.adaptive.enabled, baseCount: policy.adaptive.baseCount, bucketMs: policy.intervalMs }, prev?.profiler)
    const s: VmControlState = { window: prev?.window ?? window.state(), profiler: prev?.profiler ?? profiler.state(), coopSwap: prev?.coopSwap ?? false }
    if (prev?.migrating !== undefined) s.migrating = { ...prev.migrating }
    if (prev?.blockedReported === true) s.blockedReported = true
    if (prev?.graceUntilMs !== undefined) s.graceUntilMs = prev.graceUntilMs
    const base = { vm: vm.name, host: vm.host, atMs: input.atMs }
    const oversubscribed = vm.allocatedBytes < vm.requestedBytes

    /** Forgets the VM's history (window, profile, pending move) and turns cooperative swap off. */
    const startFresh = (reason: 'arrived' | 'migration finished'): void => {
      window.reset()
      profiler.reset()
      delete s.migrating
      delete s.blockedReported
      if (s.coopSwap) {
        s.coopSwap = false
        actions.push({ kind: 'coop-swap-off', vm: vm.name, reason })
        events.push({ ...base, type: 'coopswap.off', reason })
      }
    }

    if (vm.arriving === true || arrived.has(vm.name)) {
      // Moving in, or just arrived: what was measured before (elsewhere, at another allocation,
      // or the move's own copying of the swap disk) says nothing about the VM here.
      startFresh('arrived')
      if (vm.arriving === true) delete s.graceUntilMs
      else s.graceUntilMs = input.atMs + graceMs
      s.window = window.state()
      s.profiler = profiler.state()
      next.vms[vm.name] = s
      continue
    }

    if (s.migrating !== undefined && (migrated.has(vm.name) || migrated.has(s.migrating.move))) {
      // The VM now has its memory (here or elsewhere): its old profile no longer describes it.
      startFresh('migration finished')
    }
    if (s.migrating !== undefined && (failed.has(vm.name) || failed.has(s.migrating.move))) delete s.migrating
    if (s.migrating !== undefined && expired(s.migrating)) {
      events.push({ ...base, type: 'migration.expired', move: s.migrating.move, target: s.migrating.target, sinceMs: s.migrating.sinceMs ?? input.atMs })
      delete s.migrating
    }

    // Rates of intervals inside the grace period after arrival are not observed.
    const inGrace = s.graceUntilMs !== undefined && input.atMs <= s.graceUntilMs
    if (!inGrace) delete s.graceUntilMs
    const rate = inGrace ? undefined : input.rates[vm.name]
    if (rate !== undefined) {
      const overloaded = classifyInterval(rate, policy.overloadOpsPerSec) === 'overloaded'
      const thresholdMs = profiler.thresholdMs
      const step = window.observe(overloaded, input.atMs, thresholdMs)
      if (step.started) {
        delete s.blockedReported
        events.push({ ...base, type: 'overload.started', opsPerSec: rate })
        events.push({ ...base, type: 'overload.classified', class: 'transient', durationMs: step.durationMs, overloadedInWindow: step.overloadedInWindow, thresholdMs })
        if (!s.coopSwap) {
          if (!oversubscribed) {
            events.push({ ...base, type: 'coopswap.unavailable', reason: `${vm.name} is not oversubscribed (allocated = requested): its paging is its own` })
          } else if (!reposFor(vm.name)) {
            events.push({ ...base, type: 'coopswap.unavailable', reason: 'no page repository has room; pages go to the local swap disk' })
          } else {
            s.coopSwap = true
            actions.push({ kind: 'coop-swap-on', vm: vm.name, reason: `transient overload: ${rate.toFixed(0)} paging ops/s > ${policy.overloadOpsPerSec}` })
            events.push({ ...base, type: 'coopswap.on', reason: 'transient overload' })
          }
        }
      }
      if (step.becameSustained) {
        events.push({ ...base, type: 'overload.classified', class: 'sustained', durationMs: step.durationMs, overloadedInWindow: step.overloadedInWindow, thresholdMs, by: window.sustainedBy ?? 'window' })
      }
      if (step.class === 'sustained' && s.migrating === undefined && oversubscribed && !busy.has(vm.name)) {
        const choice = chooseMigration(vm, vmsOn.get(vm.host) ?? [], hosts, busy)
        if (typeof choice === 'string') {
          if (s.blockedReported !== true) {
            events.push({ ...base, type: 'migration.blocked', reason: choice })
            s.blockedReported = true
          }
        } else {
          s.migrating = { move: choice.move, target: choice.target, sinceMs: input.atMs }
          busy.add(vm.name)
          busy.add(choice.move)
          const moved = byName.get(choice.move)
          const t = hostByName.get(choice.target)
          if (t !== undefined) t.migrationSpaceBytes -= choice.move === vm.name ? vm.requestedBytes : (moved?.allocatedBytes ?? 0)
          actions.push({ kind: 'migrate', vm: choice.move, target: choice.target, relieves: vm.name, growToBytes: choice.growToBytes, reason: choice.reason })
          events.push({ ...base, type: 'migration.decided', move: choice.move, target: choice.target, relieves: vm.name, bytes: choice.bytes, reason: choice.reason })
        }
      }
      if (step.ended !== undefined) {
        events.push({ ...base, type: 'overload.ended', class: step.ended.class, durationMs: step.ended.durationMs })
        if (step.ended.class === 'transient') {
          const change = profiler.recordTransient(step.ended.durationMs)
          if (change !== undefined) events.push({ ...base, type: 'threshold.changed', ...change })
        }
        delete s.blockedReported
        if (s.coopSwap) {
          s.coopSwap = false
          actions.push({ kind: 'coop-swap-off', vm: vm.name, reason: 'overload ended' })
          events.push({ ...base, type: 'coopswap.off', reason: 'overload ended' })
        }
      }
    }
    s.window = window.state()
    s.profiler = profiler.state()
    next.vms[vm.name] = s
  }
  return { state: next, actions, events }
}
