/**
 * Evacuating a host: live-migrates every VM of a host that will go away (a spot interruption,
 * `supercloud evacuate HOST`) to other hosts, through the controller's migration path (each
 * move holds the VM's move lock, state/vm-lock.ts). The plan (plan.ts) is made from the state
 * first and said before anything moves: where each VM goes, and which VMs are not expected to
 * make the deadline or have no host with room. After each move the rest is planned again with
 * the bandwidth that move measured, and a VM that became late is said then, still before the
 * deadline. Progress goes to `onProgress` (the operation's progress in the event stream).
 *
 * Unhurried (a rebalance recommendation: `urgency` without a deadline): every VM moves by
 * pre-copy with no deadline, one at a time. When the caller sets `urgency.deadline` meanwhile (an
 * interruption notice came), the move in flight finishes as it started and the rest is planned
 * against the deadline, in the deadline's modes.
 */
import { CancelledError, NotFoundError, SupercloudError, throwIfAborted } from '../../core/errors.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { Spec, WireSpec } from '../../core/spec.ts'
import type { MigrateOptions, MigrateResult } from '../controller/types.ts'
import { crossSiteMoveProblems } from '../migration/cross-site.ts'
import type { HostRow, VmRow } from '../state/store.ts'
import { describeEvacuation, planEvacuation, type EvacuationPlan, type EvacuationTarget } from './plan.ts'

/** What an evacuation needs of the controller (Controller has these). */
export interface EvacuationController {
  store: { vms: () => VmRow[], hosts: () => HostRow[] }
  wires: (spec: Spec) => WireSpec[]
  migrate: (spec: Spec, vm: string, to: string, opts: MigrateOptions) => Promise<MigrateResult>
}

/** Bandwidth assumed before a migration measured one: within a site, and between sites (200 Mbit/s). */
export const DEFAULT_SITE_BANDWIDTH = 1_000_000_000 / 8
export const DEFAULT_WAN_BANDWIDTH = 200_000_000 / 8
/** An evacuation without a deadline (by hand, a rebalance recommendation) plans against this much time. */
export const UNHURRIED_MS = 3_600_000

/** A deadline that may come while the evacuation runs (serve sets it on an interruption notice). */
export interface EvacuationUrgency { deadline?: number }

export interface EvacuateOptions {
  /** Epoch ms the host goes away; default none (planned against an hour). */
  deadline?: number
  /** Instead of `deadline`: unhurried (pre-copy, no deadline) until its `deadline` is set. */
  urgency?: EvacuationUrgency
  /** Other hosts that are going away too: not targets. */
  avoid?: ReadonlySet<string>
  /** Bytes/s assumed until measured; default DEFAULT_SITE_BANDWIDTH within the site, DEFAULT_WAN_BANDWIDTH across. */
  bandwidth?: number
  signal?: AbortSignal
  onProgress?: (ev: ProgressEvent) => void
  now?: () => number
}

export interface EvacuationResult {
  host: string
  deadline?: string
  /** The plan as made before anything moved. */
  plan: EvacuationPlan
  moved: Array<{ vm: string, to: string, totalMs: number, downtimeMs: number, endedAt: string, beforeDeadline: boolean }>
  failed: Array<{ vm: string, to: string, error: string, code?: string }>
  /** VMs no host could take. */
  stranded: Array<{ vm: string, reason: string }>
}

/** VMs were left on a host being evacuated (no room, or their migration failed). */
export class EvacuationIncompleteError extends SupercloudError {
  constructor (readonly result: EvacuationResult) {
    const left = [...result.stranded.map(s => `${s.vm} (no host can take it: ${s.reason})`), ...result.failed.map(f => `${f.vm} (migration to ${f.to} failed: ${f.error})`)]
    super('SC_EVACUATION_INCOMPLETE', `evacuation of ${result.host} left ${left.length} VM(s) on it: ${left.join('; ')}` +
      `${result.moved.length > 0 ? `; moved ${result.moved.map(m => `${m.vm} to ${m.to}`).join(', ')}` : ''}` +
      (result.stranded.length > 0 ? '; add a host with room (or free memory) and run `supercloud evacuate` again' : ''))
  }
}

/** Live-migrates every VM of `host` elsewhere; throws EvacuationIncompleteError when some stay. */
export async function evacuateHost (c: EvacuationController, spec: Spec, host: string, opts: EvacuateOptions = {}): Promise<EvacuationResult> {
  const now = opts.now ?? Date.now
  const src = spec.hosts[host]
  if (src === undefined || !c.store.hosts().some(h => h.name === host)) throw new NotFoundError('host', host)
  const say = (message: string, fraction?: number): void => opts.onProgress?.({ subject: `host ${host}`, phase: 'evacuate', message, ...(fraction !== undefined ? { fraction } : {}) })
  const started = now()
  const deadlineNow = (): number | undefined => opts.urgency !== undefined ? opts.urgency.deadline : opts.deadline
  const unhurried = (): boolean => opts.urgency !== undefined && opts.urgency.deadline === undefined
  let deadline = deadlineNow() ?? started + UNHURRIED_MS
  const measured = new Map<string, number>()
  const siteOf = (h: string): string => spec.hosts[h]?.site ?? ''
  const bandwidth = (t: EvacuationTarget): number => measured.get(t.site) ?? opts.bandwidth ?? (t.site === src.site ? DEFAULT_SITE_BANDWIDTH : DEFAULT_WAN_BANDWIDTH)
  const wires = c.wires(spec)

  const planNow = (): EvacuationPlan => {
    const vms = c.store.vms()
    const ready = new Set(c.store.hosts().filter(h => h.status === 'ready').map(h => h.name))
    const used = (h: string): number => vms.filter(v => v.host === h).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0)
    const targets = Object.values(spec.hosts)
      .filter(h => h.name !== host && ready.has(h.name) && opts.avoid?.has(h.name) !== true)
      .map(h => ({ name: h.name, site: h.site, freeBytes: Math.max(0, h.memoryBytes - used(h.name)) }))
    const placement = Object.fromEntries(vms.map(v => [v.name, v.host]))
    return planEvacuation({
      source: { name: host, site: src.site },
      vms: vms.filter(v => v.host === host && spec.vms[v.name] !== undefined).map(v => ({ name: v.name, memoryBytes: v.record?.memory.allocatedBytes ?? spec.vms[v.name]?.memory.allocatedBytes ?? 0 })),
      targets,
      bandwidth,
      refuse: (vm, to) => {
        const kind = spec.hosts[to]?.hypervisor.backend ?? 'qemu'
        if (kind !== src.hypervisor.backend) return `runs ${kind}, ${host} runs ${src.hypervisor.backend}`
        const crossing = crossSiteMoveProblems(spec, wires, placement, vm, to)
        return crossing.length > 0 ? `the extender rule (${crossing.join('; ')})` : undefined
      },
      now: now(),
      deadline
    })
  }

  const first = planNow()
  const result: EvacuationResult = { host, ...(deadlineNow() !== undefined ? { deadline: new Date(deadline).toISOString() } : {}), plan: first, moved: [], failed: [], stranded: first.stranded }
  const total = first.moves.length + first.stranded.length
  if (total === 0) { say('no VMs on the host: nothing to move', 1); return result }
  say(`plan${deadlineNow() !== undefined ? ` (deadline ${new Date(deadline).toISOString()}, ${Math.round((deadline - now()) / 1000)} s from now)` : unhurried() ? ' (unhurried: pre-copy, one at a time)' : ''}: ${describeEvacuation(first, deadline).join('; ')}`, 0)
  const saidLate = new Set(first.late)
  let plan = first
  const tried = new Set<string>()
  for (;;) {
    // A deadline that came meanwhile (an interruption notice during an unhurried evacuation, or a new time).
    const d = deadlineNow()
    if (d !== undefined && (result.deadline === undefined || d !== deadline)) {
      deadline = d
      result.deadline = new Date(d).toISOString()
      plan = planNow()
      say(`hurried: the host goes away at ${result.deadline} (${Math.round((d - now()) / 1000)} s from now); the rest: ${describeEvacuation({ ...plan, moves: plan.moves.filter(m => !tried.has(m.vm)) }, deadline).join('; ')}`)
      for (const m of plan.moves) if (!tried.has(m.vm) && !m.inTime) saidLate.add(m.vm)
    }
    const move = plan.moves.find(m => !tried.has(m.vm))
    if (move === undefined) break
    tried.add(move.vm)
    throwIfAborted(opts.signal, `evacuation of ${host}`)
    const calm = unhurried()
    const left = deadline - now()
    if (!calm && left <= 0) {
      result.failed.push({ vm: move.vm, to: move.to, error: `the deadline ${new Date(deadline).toISOString()} passed before its turn` })
      continue
    }
    say(`${move.vm} -> ${move.to} (${calm ? 'precopy' : move.mode}, about ${(move.estimateMs / 1000).toFixed(1)} s${calm ? '' : `; ${Math.round(left / 1000)} s to the deadline`})`, result.moved.length / total)
    try {
      const mode = src.hypervisor.backend === 'xen' ? 'auto' : calm ? 'precopy' : move.mode
      const r = await c.migrate(spec, move.vm, move.to, { mode, ...(calm ? {} : { deadlineMs: Math.max(1000, left) }), ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
      const ended = now()
      if (r.totalMs > 0 && r.sentBytes > 0) measured.set(siteOf(move.to), r.sentBytes / (r.totalMs / 1000))
      result.moved.push({ vm: move.vm, to: move.to, totalMs: r.totalMs, downtimeMs: r.downtimeMs, endedAt: new Date(ended).toISOString(), beforeDeadline: ended <= deadline })
      say(`${move.vm} runs on ${move.to} (${(r.totalMs / 1000).toFixed(1)} s, downtime ${r.downtimeMs} ms)`, result.moved.length / total)
    } catch (err) {
      if (err instanceof CancelledError || opts.signal?.aborted === true) throw err
      const e = err as Error
      result.failed.push({ vm: move.vm, to: move.to, error: e.message, ...(err instanceof SupercloudError ? { code: err.code } : {}) })
      say(`${move.vm} could not move to ${move.to}: ${e.message}`)
    }
    // The rest again, with what this move measured and where the VMs are now.
    plan = planNow()
    const late = plan.moves.filter(m => !tried.has(m.vm) && !m.inTime && !saidLate.has(m.vm))
    for (const m of late) { saidLate.add(m.vm); say(`${m.vm} is not expected to make the deadline (about ${(m.estimateMs / 1000).toFixed(1)} s, done by ${new Date(m.endsAt).toISOString()})`) }
    for (const s of plan.stranded) if (!result.stranded.some(x => x.vm === s.vm) && !tried.has(s.vm)) { result.stranded.push(s); say(`${s.vm}: no host can take it (${s.reason})`) }
  }
  if (result.stranded.length > 0 || result.failed.length > 0) throw new EvacuationIncompleteError(result)
  const after = result.moved.filter(m => !m.beforeDeadline).map(m => m.vm)
  const lastEnd = Date.parse(result.moved[result.moved.length - 1]?.endedAt ?? '')
  say(`all ${result.moved.length} VM(s) moved${result.deadline === undefined ? '' : after.length > 0 ? `; after the deadline: ${after.join(', ')}` : `, the last ${Math.round((deadline - lastEnd) / 1000)} s before the deadline`}`, 1)
  return result
}
