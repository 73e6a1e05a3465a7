/**
 * Capacity planning for overload (seed 002 §6.2.2, pure).
 *
 * With n VMs whose overloads are independent and p the probability of the most likely VM
 * to be overloaded, P{# overloaded VMs <= k} = sum_{i=0..k} C(n,i) p^i (1-p)^(n-i).
 * Sustained and transient overloads are counted separately: a VM is in sustained overload
 * with probability p·s and in transient overload with p·(1-s), s being the share of its
 * overloads that last long enough to need migration. Each sustained overload needs room for
 * a whole VM (its requested memory) on one host; each transient overload needs
 * requested - allocated of page repository space, however short it is (the seed's
 * conservative assumption).
 */

/** ln of the binomial probability mass, computed by recurrence so large n stays finite. */
function logPmfs (n: number, p: number, kMax: number): number[] {
  const out: number[] = []
  if (p === 0) { for (let i = 0; i <= kMax; i++) out.push(i === 0 ? 0 : -Infinity); return out }
  if (p === 1) { for (let i = 0; i <= kMax; i++) out.push(i === n ? 0 : -Infinity); return out }
  const lq = Math.log1p(-p)
  const lodds = Math.log(p) - lq
  let l = n * lq // i = 0
  for (let i = 0; i <= kMax; i++) {
    out.push(l)
    l += Math.log((n - i) / (i + 1)) + lodds
  }
  return out
}

function checkArgs (n: number, p: number): void {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be an integer >= 0, got ${n}`)
  if (!(p >= 0 && p <= 1)) throw new RangeError(`p must be a probability in [0, 1], got ${p}`)
}

/** P{X <= k} for X ~ Binomial(n, p), summed in log space (log-sum-exp). */
export function binomialCdf (n: number, p: number, k: number): number {
  checkArgs(n, p)
  if (!Number.isInteger(k)) throw new RangeError(`k must be an integer, got ${k}`)
  if (k < 0) return 0
  if (k >= n) return 1
  const l = logPmfs(n, p, k)
  const m = Math.max(...l)
  if (m === -Infinity) return 0
  const s = l.reduce((a, x) => a + Math.exp(x - m), 0)
  return Math.min(1, Math.exp(m + Math.log(s)))
}

/** The smallest k with P{X <= k} >= confidence. */
export function minK (n: number, p: number, confidence: number): number {
  checkArgs(n, p)
  if (!(confidence > 0 && confidence <= 1)) throw new RangeError(`confidence must be in (0, 1], got ${confidence}`)
  if (confidence === 1) return p === 0 ? 0 : n
  const l = logPmfs(n, p, n)
  const m = Math.max(...l)
  let s = 0
  // Accumulate relative to the mode; compare in log space so tiny tails are not lost.
  const total = l.reduce((a, x) => a + Math.exp(x - m), 0)
  for (let k = 0; k <= n; k++) {
    s += Math.exp((l[k] ?? -Infinity) - m)
    if (s / total >= confidence - 1e-15) return k
  }
  return n
}

export interface OverloadProfile {
  /** Probability that a VM is overloaded (the most likely VM's). */
  pOverload: number
  /** Share of its overloads that are sustained (need migration), 0..1. */
  sustainedShare: number
}

export interface CapacityPlanInput extends OverloadProfile {
  vms: number
  requestedBytes: number
  allocatedBytes: number
  /** Default 0.97. */
  confidence?: number
}

export interface CapacityPlan {
  vms: number
  confidence: number
  pSustained: number
  pTransient: number
  /** At most this many simultaneous sustained overloads, with probability >= confidence. */
  sustained: number
  /** At most this many simultaneous transient overloads, with probability >= confidence. */
  transient: number
  /** P{#sustained <= sustained} and P{#transient <= transient}. */
  pSustainedBound: number
  pTransientBound: number
  /** Room for `sustained` whole VMs (requested memory each), one slot per migration target. */
  migrationBytes: number
  migrationSlotBytes: number
  /** Page repository memory for `transient` VMs, (requested - allocated) each. */
  repositoryBytes: number
  /** Memory the VMs themselves get (n * allocated). */
  vmBytes: number
  totalBytes: number
}

/** Excess space needed for n VMs at an allocation (seed §6.2.2). */
export function capacityPlan (input: CapacityPlanInput): CapacityPlan {
  const confidence = input.confidence ?? 0.97
  const { vms: n, pOverload: p, sustainedShare: s } = input
  if (!(s >= 0 && s <= 1)) throw new RangeError(`sustainedShare must be in [0, 1], got ${s}`)
  if (!(input.allocatedBytes > 0) || input.allocatedBytes > input.requestedBytes) throw new RangeError(`allocated (${input.allocatedBytes}) must be > 0 and <= requested (${input.requestedBytes})`)
  const pS = p * s
  const pT = p * (1 - s)
  const sustained = minK(n, pS, confidence)
  const transient = minK(n, pT, confidence)
  const migrationBytes = sustained * input.requestedBytes
  const repositoryBytes = transient * (input.requestedBytes - input.allocatedBytes)
  const vmBytes = n * input.allocatedBytes
  return {
    vms: n,
    confidence,
    pSustained: pS,
    pTransient: pT,
    sustained,
    transient,
    pSustainedBound: binomialCdf(n, pS, sustained),
    pTransientBound: binomialCdf(n, pT, transient),
    migrationBytes,
    migrationSlotBytes: input.requestedBytes,
    repositoryBytes,
    vmBytes,
    totalBytes: vmBytes + migrationBytes + repositoryBytes
  }
}

/**
 * The most VMs that fit in `totalBytes` with their excess space (Fig. 6.3's analysis):
 * increase n while n VMs plus the excess they need still fit. `strategy: 'migration-only'`
 * handles every overload by migration (each needs a whole VM of room).
 */
export function maxVms (totalBytes: number, input: Omit<CapacityPlanInput, 'vms'> & { strategy?: 'overdriver' | 'migration-only' }): { vms: number, plan: CapacityPlan } {
  const planFor = (n: number): CapacityPlan => input.strategy === 'migration-only'
    ? capacityPlan({ ...input, vms: n, sustainedShare: 1 })
    : capacityPlan({ ...input, vms: n })
  let best = planFor(0)
  const upper = Math.floor(totalBytes / input.allocatedBytes)
  for (let n = 1; n <= upper; n++) {
    const plan = planFor(n)
    if (plan.totalBytes > totalBytes) break
    best = plan
  }
  return { vms: best.vms, plan: best }
}

export interface HostCapacity {
  name: string
  /** Memory this host offers to guests. */
  memoryBytes: number
  /** Memory its VMs are allocated. */
  usedBytes: number
  /** May this host run a page repository (policy `repositories.hosts`)? Default true. */
  repository?: boolean
  /** Cap on its repository memory (policy `repositories.memory`). */
  repositoryMaxBytes?: number
}

export interface HostExcess {
  name: string
  freeBytes: number
  /** Whole migration slots kept free on this host. */
  migrationSlots: number
  migrationBytes: number
  repositoryBytes: number
  /** Free memory given to neither. */
  spareBytes: number
}

export interface ExcessSplit {
  hosts: HostExcess[]
  /** Migration slots that fit nowhere. */
  missingMigrationSlots: number
  /** Repository bytes that fit nowhere. */
  missingRepositoryBytes: number
  ok: boolean
}

/**
 * The excess space manager's split of each host's free memory between migration targets and
 * page repositories. Migration slots need a whole VM on one host, so they are placed first,
 * each on the host with the most free memory left; repository space can be spread anywhere
 * and fills what remains, host by host in the order of most remaining room, within each
 * host's repository cap.
 */
export function splitExcess (hosts: HostCapacity[], need: { migrationSlots: number, migrationSlotBytes: number, repositoryBytes: number }): ExcessSplit {
  const out: HostExcess[] = hosts.map(h => {
    const free = Math.max(0, h.memoryBytes - h.usedBytes)
    return { name: h.name, freeBytes: free, migrationSlots: 0, migrationBytes: 0, repositoryBytes: 0, spareBytes: free }
  })
  let missingSlots = 0
  for (let i = 0; i < need.migrationSlots; i++) {
    const h = out.filter(x => x.spareBytes >= need.migrationSlotBytes).sort((a, b) => b.spareBytes - a.spareBytes || a.name.localeCompare(b.name))[0]
    if (h === undefined) { missingSlots++; continue }
    h.migrationSlots++
    h.migrationBytes += need.migrationSlotBytes
    h.spareBytes -= need.migrationSlotBytes
  }
  let left = need.repositoryBytes
  const order = out.map((x, i) => ({ x, h: hosts[i] }))
    .filter(({ h }) => h?.repository !== false)
    .sort((a, b) => b.x.spareBytes - a.x.spareBytes || a.x.name.localeCompare(b.x.name))
  for (const { x, h } of order) {
    if (left <= 0) break
    const cap = Math.min(x.spareBytes, h?.repositoryMaxBytes ?? Infinity)
    const take = Math.min(cap, left)
    x.repositoryBytes += take
    x.spareBytes -= take
    left -= take
  }
  return { hosts: out, missingMigrationSlots: missingSlots, missingRepositoryBytes: Math.max(0, left), ok: missingSlots === 0 && left <= 0 }
}
