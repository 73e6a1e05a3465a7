/**
 * The evacuation plan of a host that will go away at a deadline (a spot interruption): where
 * each of its VMs goes and in which order, so that the most VMs are running elsewhere before
 * the deadline. Pure: no I/O, no clock (the caller gives `now`).
 *
 * Targets: a VM goes to a host with room for its memory that the caller allows (the extender
 * rule: no wire of the VM crosses sites in clear after the move; the same hypervisor),
 * preferring the source's site (faster, no tunnel), then the fastest measured link, then the
 * most free memory. The biggest VMs are placed first, so they still find room.
 *
 * Order: migrations leave the source one at a time (they share its uplink), and the time of
 * each is its memory over the measured bandwidth (less its dirty rate: pre-copy resends what
 * the guest writes). With one deadline for all, shortest first finishes the most VMs before it;
 * every VM whose estimated end is after the deadline is reported as late now, before it.
 * A VM whose pre-copy cannot converge (dirty rate at or above the bandwidth) moves by
 * post-copy (each page once): its time is then memory over bandwidth.
 */

export interface EvacuationVm {
  name: string
  /** What the VM's memory takes to move (its allocation). */
  memoryBytes: number
  /** Bytes per second the guest dirties, when known (0 otherwise). */
  dirtyBytesPerSec?: number
}

export interface EvacuationTarget {
  name: string
  site: string
  freeBytes: number
}

export interface EvacuationInput {
  source: { name: string, site: string }
  vms: EvacuationVm[]
  targets: EvacuationTarget[]
  /** Bytes per second from the source to `target` (measured, else a default). */
  bandwidth: (target: EvacuationTarget) => number
  /** Why `vm` may not go to `target` (the extender rule, the hypervisor), or undefined when it may. */
  refuse: (vm: string, target: string) => string | undefined
  /** Epoch ms. */
  now: number
  deadline: number
  /** Fixed cost of one migration besides the memory (setup, switchover, wires); default 3000 ms. */
  overheadMs?: number
  /** Kept free before the deadline; default 5000 ms. */
  marginMs?: number
}

export type EvacuationMode = 'auto' | 'postcopy'

export interface EvacuationMove {
  vm: string
  to: string
  mode: EvacuationMode
  /** Estimated duration of its migration (ms). */
  estimateMs: number
  /** Estimated end (epoch ms), migrations one after another in this order. */
  endsAt: number
  /** Ends before the deadline (less the margin) by the estimate. */
  inTime: boolean
}

export interface EvacuationPlan {
  /** In the order to run them. */
  moves: EvacuationMove[]
  /** VMs no host can take (no room, or refused by every host with room), with the reasons. */
  stranded: Array<{ vm: string, reason: string }>
  /** Names of the VMs of `moves` that are not expected to make the deadline. */
  late: string[]
}

export const DEFAULT_OVERHEAD_MS = 3000
export const DEFAULT_MARGIN_MS = 5000

/** Estimated migration time and mode of a VM at a bandwidth. */
export function estimateMove (vm: EvacuationVm, bytesPerSec: number, overheadMs = DEFAULT_OVERHEAD_MS): { ms: number, mode: EvacuationMode } {
  const dirty = vm.dirtyBytesPerSec ?? 0
  if (bytesPerSec <= 0) return { ms: Number.POSITIVE_INFINITY, mode: 'auto' }
  // Pre-copy converges when the guest dirties less than half of what the link carries; else post-copy.
  if (dirty * 2 < bytesPerSec) return { ms: overheadMs + (vm.memoryBytes / (bytesPerSec - dirty)) * 1000, mode: 'auto' }
  return { ms: overheadMs + (vm.memoryBytes / bytesPerSec) * 1000, mode: 'postcopy' }
}

function mib (b: number): string { return `${Math.round(b / 1048576)}M` }

/** Chooses targets, then orders the moves shortest first against the deadline. */
export function planEvacuation (input: EvacuationInput): EvacuationPlan {
  const overhead = input.overheadMs ?? DEFAULT_OVERHEAD_MS
  const margin = input.marginMs ?? DEFAULT_MARGIN_MS
  const free = new Map(input.targets.map(t => [t.name, t.freeBytes]))
  const stranded: EvacuationPlan['stranded'] = []
  const placed: Array<{ vm: EvacuationVm, target: EvacuationTarget, estimate: { ms: number, mode: EvacuationMode } }> = []
  const bySize = [...input.vms].sort((a, b) => b.memoryBytes - a.memoryBytes || a.name.localeCompare(b.name))
  for (const vm of bySize) {
    const reasons: string[] = []
    let best: EvacuationTarget | undefined
    const rank = (t: EvacuationTarget): [number, number, number] => [t.site === input.source.site ? 1 : 0, input.bandwidth(t), free.get(t.name) ?? 0]
    for (const t of input.targets) {
      if (t.name === input.source.name) continue
      const room = free.get(t.name) ?? 0
      if (room < vm.memoryBytes) { reasons.push(`${t.name} has ${mib(room)} free`); continue }
      const no = input.refuse(vm.name, t.name)
      if (no !== undefined) { reasons.push(`${t.name}: ${no}`); continue }
      if (best === undefined || before(rank(t), rank(best))) best = t
    }
    if (best === undefined) {
      stranded.push({ vm: vm.name, reason: `needs ${mib(vm.memoryBytes)}; ${reasons.length > 0 ? reasons.join('; ') : 'no other host'}` })
      continue
    }
    free.set(best.name, (free.get(best.name) ?? 0) - vm.memoryBytes)
    placed.push({ vm, target: best, estimate: estimateMove(vm, input.bandwidth(best), overhead) })
  }
  placed.sort((a, b) => a.estimate.ms - b.estimate.ms || a.vm.memoryBytes - b.vm.memoryBytes || a.vm.name.localeCompare(b.vm.name))
  let t = input.now
  const moves: EvacuationMove[] = placed.map(p => {
    t += p.estimate.ms
    return { vm: p.vm.name, to: p.target.name, mode: p.estimate.mode, estimateMs: Math.round(p.estimate.ms), endsAt: Math.round(t), inTime: t <= input.deadline - margin }
  })
  return { moves, stranded, late: moves.filter(m => !m.inTime).map(m => m.vm) }
}

/** Lexicographic "ranks higher". */
function before (a: number[], b: number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0
    const y = b[i] ?? 0
    if (x !== y) return x > y
  }
  return false
}

/** The plan in lines (what `evacuate` prints and the operation's progress says before it starts). */
export function describeEvacuation (p: EvacuationPlan, deadline: number): string[] {
  const lines = p.moves.map(m => `${m.vm} -> ${m.to} (${m.mode}, about ${(m.estimateMs / 1000).toFixed(1)} s, done by ${new Date(m.endsAt).toISOString()}${m.inTime ? '' : ', AFTER THE DEADLINE'})`)
  for (const s of p.stranded) lines.push(`${s.vm}: no host can take it (${s.reason})`)
  if (p.late.length > 0) lines.push(`not expected to make it before ${new Date(deadline).toISOString()}: ${p.late.join(', ')}`)
  return lines
}
