/**
 * Evacuating a host: live-migrates every VM of a host that will go away (a spot interruption,
 * `supercloud evacuate HOST`) to other hosts, through the controller's migration path (each
 * move holds the VM's move lock, state/vm-lock.ts). The plan (plan.ts) is made from the state
 * first and said before anything moves: where each VM goes, and which VMs are not expected to
 * make the deadline or have no host with room. Hosts a VM may not go to (the extender and
 * site-network rules, the hypervisor) are skipped as its targets, not tried. After each move
 * the rest is planned again with the bandwidth that move measured, and a VM that became late
 * is said then, still before the deadline. Progress goes to `onProgress` (the operation's
 * progress in the event stream).
 *
 * Unhurried (a rebalance recommendation: `urgency` without a deadline): every VM moves by
 * pre-copy with no deadline, one at a time. When the caller sets `urgency.deadline` meanwhile (an
 * interruption notice came), the move in flight finishes as it started and the rest is planned
 * against the deadline, in the deadline's modes.
 *
 * Replacement capacity: when no host has room for some VMs and the controller can add hosts,
 * a replacement host is launched for them (replacement.ts: the source's spot pool, then
 * on-demand) while the other VMs move; once it is ready the rest is planned again with it. When
 * it is not ready in time for their moves to end before the deadline, those VMs are said to be
 * lost and the evacuation ends then (SC_EVACUATION_INCOMPLETE), before the deadline, not after.
 */
import { CancelledError, NotFoundError, SupercloudError, throwIfAborted, VmMovingError } from '../../core/errors.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { HostSpec, Spec, WireSpec } from '../../core/spec.ts'
import type { MigrateOptions, MigrateResult } from '../controller/types.ts'
import { crossSiteMoveProblems } from '../migration/cross-site.ts'
import { strandedNics, strandedReason } from '../migration/site-network.ts'
import type { HostRow, VmRow } from '../state/store.ts'
import { DEFAULT_MARGIN_MS, describeEvacuation, estimateMove, planEvacuation, type EvacuationPlan, type EvacuationTarget } from './plan.ts'
import { ReplacementLaunch, type AddHost, type ReplacementRecord } from './replace-host.ts'
import { replacementCandidates } from './replacement.ts'

/** What an evacuation needs of the controller (Controller has these). */
export interface EvacuationController {
  store: { vms: () => VmRow[], hosts: () => HostRow[] }
  wires: (spec: Spec) => WireSpec[]
  migrate: (spec: Spec, vm: string, to: string, opts: MigrateOptions) => Promise<MigrateResult>
  /** Launches replacement capacity; without it, VMs with no host with room stay stranded. */
  addHost?: AddHost
}

/** Bandwidth assumed before a migration measured one: within a site, and between sites (200 Mbit/s). */
export const DEFAULT_SITE_BANDWIDTH = 1_000_000_000 / 8
export const DEFAULT_WAN_BANDWIDTH = 200_000_000 / 8
/** An evacuation without a deadline (by hand, a rebalance recommendation) plans against this much time. */
export const UNHURRIED_MS = 3_600_000
/** How long to wait before trying again a VM another process is moving. */
export const BUSY_RETRY_MS = 1000

/** A deadline that may come while the evacuation runs (serve sets it on an interruption notice). */
export interface EvacuationUrgency { deadline?: number }

export interface EvacuateOptions {
  /** Epoch ms the host goes away; default none (planned against an hour). */
  deadline?: number
  /** Instead of `deadline`: unhurried (pre-copy, no deadline) until its `deadline` is set. */
  urgency?: EvacuationUrgency
  /** Other hosts that are going away too: not targets (asked at every plan: a notice may come meanwhile). */
  avoid?: { has: (host: string) => boolean }
  /** Bytes/s assumed until measured; default DEFAULT_SITE_BANDWIDTH within the site, DEFAULT_WAN_BANDWIDTH across. */
  bandwidth?: number
  signal?: AbortSignal
  onProgress?: (ev: ProgressEvent) => void
  now?: () => number
  /** Waits (the replacement's launch against the deadline); default a timer. */
  sleep?: (ms: number) => Promise<void>
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
  /** VMs another process (a `migrate`, serve's Overdriver) moved off the host meanwhile. */
  movedByOthers?: Array<{ vm: string, to: string }>
  /** Replacement hosts tried, in order (the last ready one took the stranded VMs). */
  replacements?: ReplacementRecord[]
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
  // The spec with the replacement host once it is ready.
  let cur = spec

  const planNow = (): EvacuationPlan => {
    const vms = c.store.vms()
    const ready = new Set(c.store.hosts().filter(h => h.status === 'ready').map(h => h.name))
    const used = (h: string): number => vms.filter(v => v.host === h).reduce((a, v) => a + (v.record?.memory.allocatedBytes ?? 0), 0)
    const targets = Object.values(cur.hosts)
      .filter(h => h.name !== host && ready.has(h.name) && opts.avoid?.has(h.name) !== true)
      .map(h => ({ name: h.name, site: h.site, freeBytes: Math.max(0, h.memoryBytes - used(h.name)) }))
    const placement = Object.fromEntries(vms.map(v => [v.name, v.host]))
    const addresses = (vm: string): Record<string, string> => Object.fromEntries((vms.find(v => v.name === vm)?.record?.nics ?? []).map(n => [n.name, n.address]))
    return planEvacuation({
      source: { name: host, site: src.site },
      vms: vms.filter(v => v.host === host && spec.vms[v.name] !== undefined).map(v => ({ name: v.name, memoryBytes: v.record?.memory.allocatedBytes ?? spec.vms[v.name]?.memory.allocatedBytes ?? 0 })),
      targets,
      bandwidth,
      refuse: (vm, to) => {
        const kind = cur.hosts[to]?.hypervisor.backend ?? 'qemu'
        if (kind !== src.hypervisor.backend) return `runs ${kind}, ${host} runs ${src.hypervisor.backend}`
        const crossing = crossSiteMoveProblems(cur, wires, placement, vm, to)
        if (crossing.length > 0) return `the extender rule (${crossing.join('; ')})`
        const stranded = strandedReason(strandedNics(cur, wires, vm, host, to, addresses(vm)))
        return stranded !== undefined ? `the site-network rule (${stranded})` : undefined
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
  let launch: ReplacementLaunch | undefined
  // VMs another process is moving: tried again after the other moves (they may leave by that move).
  const busy = new Set<string>()
  const sleep = opts.sleep ?? (async (ms: number) => { await new Promise(resolve => setTimeout(resolve, ms).unref()) })
  let replacement: HostSpec | undefined
  const startReplacement = (): void => {
    const addHost = c.addHost?.bind(c)
    if (launch !== undefined || addHost === undefined || plan.stranded.length === 0) return
    const taken = new Set([...Object.keys(cur.hosts), ...c.store.hosts().map(h => h.name)])
    if (replacementCandidates(src, taken).length === 0) return
    say(`no host has room for ${plan.stranded.map(s => s.vm).join(', ')}: launching a replacement host while the others move`)
    launch = new ReplacementLaunch(addHost, cur, src, taken, m => { say(m) }, { ...(opts.signal !== undefined ? { signal: opts.signal } : {}), ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}) })
    result.replacements = launch.tried
    void launch.done.then(h => { replacement = h })
  }
  /** Waits for the replacement while its VMs can still make the deadline; false when they cannot (said then). */
  const awaitReplacement = async (l: ReplacementLaunch): Promise<boolean> => {
    const memOf = (vm: string): number => c.store.vms().find(v => v.name === vm)?.record?.memory.allocatedBytes ?? spec.vms[vm]?.memory.allocatedBytes ?? 0
    const need = plan.stranded.reduce((a, s) => a + estimateMove({ name: s.vm, memoryBytes: memOf(s.vm) }, measured.get(src.site) ?? opts.bandwidth ?? DEFAULT_SITE_BANDWIDTH).ms, 0)
    const lastStart = deadline - DEFAULT_MARGIN_MS - need
    const ready = unhurried() ? await l.done : await Promise.race([l.done, sleep(Math.max(0, lastStart - now())).then(() => 'late' as const)])
    if (ready !== 'late') return true
    l.giveUp()
    const host = l.tried[l.tried.length - 1]?.host ?? 'the replacement host'
    for (const s of plan.stranded) {
      const reason = `no host has room and ${host} was not ready ${Math.round((deadline - now()) / 1000)} s before the deadline (its moves need about ${Math.round(need / 1000)} s)`
      const known = result.stranded.find(x => x.vm === s.vm)
      if (known !== undefined) known.reason = reason; else result.stranded.push({ vm: s.vm, reason })
      say(`${s.vm} cannot make it before the deadline ${new Date(deadline).toISOString()}: ${reason}`)
    }
    return false
  }
  /** Takes the replacement host as a target once it is ready (or its failure into the reasons); true when the plan changed. */
  const takeReplacement = (): boolean => {
    if (launch === undefined || launch.pending || result.replacements === undefined || cur.hosts[replacement?.name ?? ''] !== undefined) return false
    if (replacement === undefined) {
      if (launch.tried.some(r => r.ready)) return false
      for (const s of result.stranded) if (!s.reason.includes('no replacement host')) s.reason += `; no replacement host could be launched (${launch.tried.map(r => `${r.what}: ${r.error ?? '?'}`).join('; ')})`
      return false
    }
    cur = { ...cur, hosts: { ...cur.hosts, [replacement.name]: replacement } }
    plan = planNow()
    return true
  }
  startReplacement()
  for (;;) {
    if (takeReplacement()) say(`the rest, with ${replacement?.name ?? '?'}: ${describeEvacuation({ ...plan, moves: plan.moves.filter(m => !tried.has(m.vm)) }, deadline).join('; ')}`)
    // A deadline that came meanwhile (an interruption notice during an unhurried evacuation, or a new time).
    const d = deadlineNow()
    if (d !== undefined && (result.deadline === undefined || d !== deadline)) {
      deadline = d
      result.deadline = new Date(d).toISOString()
      plan = planNow()
      say(`hurried: the host goes away at ${result.deadline} (${Math.round((d - now()) / 1000)} s from now); the rest: ${describeEvacuation({ ...plan, moves: plan.moves.filter(m => !tried.has(m.vm)) }, deadline).join('; ')}`)
      for (const m of plan.moves) if (!tried.has(m.vm) && !m.inTime) saidLate.add(m.vm)
    }
    let move = plan.moves.find(m => !tried.has(m.vm) && !busy.has(m.vm))
    if (move === undefined && busy.size > 0 && (unhurried() || now() < deadline - DEFAULT_MARGIN_MS)) {
      await sleep(BUSY_RETRY_MS)
      busy.clear()
      plan = planNow()
      continue
    }
    if (move === undefined) move = plan.moves.find(m => !tried.has(m.vm))
    if (move === undefined) {
      // Only VMs without room are left: wait for the replacement while they can still make it.
      if (launch?.pending !== true || plan.stranded.length === 0 || !await awaitReplacement(launch)) break
      continue
    }
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
      const r = await c.migrate(cur, move.vm, move.to, { mode, ...(calm ? {} : { deadlineMs: Math.max(1000, left) }), ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
      const ended = now()
      if (r.totalMs > 0 && r.sentBytes > 0) measured.set(siteOf(move.to), r.sentBytes / (r.totalMs / 1000))
      result.moved.push({ vm: move.vm, to: move.to, totalMs: r.totalMs, downtimeMs: r.downtimeMs, endedAt: new Date(ended).toISOString(), beforeDeadline: ended <= deadline })
      say(`${move.vm} runs on ${move.to} (${(r.totalMs / 1000).toFixed(1)} s, downtime ${r.downtimeMs} ms)`, result.moved.length / total)
    } catch (err) {
      if (err instanceof CancelledError || opts.signal?.aborted === true) throw err
      if (err instanceof VmMovingError && (calm || deadline - now() > DEFAULT_MARGIN_MS)) {
        tried.delete(move.vm)
        busy.add(move.vm)
        say(`${move.vm} is being moved by another process (pid ${err.pid}): looked at again after the other moves`)
        plan = planNow()
        continue
      }
      const e = err as Error
      result.failed.push({ vm: move.vm, to: move.to, error: e.message, ...(err instanceof SupercloudError ? { code: err.code } : {}) })
      say(`${move.vm} could not move to ${move.to}: ${e.message}`)
    }
    // The rest again, with what this move measured and where the VMs are now.
    plan = planNow()
    const late = plan.moves.filter(m => !tried.has(m.vm) && !m.inTime && !saidLate.has(m.vm))
    for (const m of late) { saidLate.add(m.vm); say(`${m.vm} is not expected to make the deadline (about ${(m.estimateMs / 1000).toFixed(1)} s, done by ${new Date(m.endsAt).toISOString()})`) }
    for (const s of plan.stranded) if (!result.stranded.some(x => x.vm === s.vm) && !tried.has(s.vm)) { result.stranded.push(s); say(`${s.vm}: no host can take it (${s.reason})`) }
    startReplacement()
  }
  // A launch nobody waits for any more (its VMs went elsewhere or failed) is given up.
  if (launch?.pending === true) launch.giveUp()
  // VMs another move took off the host meanwhile.
  const rows = c.store.vms()
  const others = first.moves.map(m => m.vm).concat(first.stranded.map(x => x.vm))
    .filter(vm => !result.moved.some(m => m.vm === vm) && !result.failed.some(f => f.vm === vm))
    .flatMap(vm => { const r = rows.find(v => v.name === vm); return r !== undefined && r.host !== host ? [{ vm, to: r.host }] : [] })
  if (others.length > 0) { result.movedByOthers = others; for (const o of others) say(`${o.vm} left by another move (now on ${o.to})`) }
  // VMs that found a host after all (the replacement, another move) are not stranded.
  result.stranded = result.stranded.filter(s => !tried.has(s.vm) && !others.some(o => o.vm === s.vm))
  if (result.stranded.length > 0 || result.failed.length > 0) throw new EvacuationIncompleteError(result)
  const after = result.moved.filter(m => !m.beforeDeadline).map(m => m.vm)
  const lastEnd = Date.parse(result.moved[result.moved.length - 1]?.endedAt ?? '')
  say(`all ${result.moved.length} VM(s) moved${result.deadline === undefined ? '' : after.length > 0 ? `; after the deadline: ${after.join(', ')}` : `, the last ${Math.round((deadline - lastEnd) / 1000)} s before the deadline`}`, 1)
  return result
}
