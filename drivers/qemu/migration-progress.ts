/**
 * QEMU's migration logic (pure): reading its `query-migrate` into progress that never runs
 * backwards, and the `auto` mode's decision to switch from precopy to postcopy.
 */

import type { MigrationMode, MigrationPhase, MigrationProgress } from '../../core/migration.ts'
export { MIGRATION_MODES, type MigrationMode, type MigrationPhase, type MigrationProgress } from '../../core/migration.ts'

/** The subset of QEMU's MigrationInfo we read. */
export interface QueryMigrate {
  status?: string
  ram?: { transferred?: number, remaining?: number, total?: number, 'dirty-pages-rate'?: number, 'page-size'?: number, 'dirty-sync-count'?: number }
  'total-time'?: number
  downtime?: number
  'expected-downtime'?: number
  'error-desc'?: string
}

export function phaseOf (status: string | undefined): MigrationPhase {
  switch (status) {
    case 'completed': return 'completed'
    case 'failed': return 'failed'
    case 'cancelled': case 'cancelling': return 'cancelled'
    case 'postcopy-active': case 'postcopy-paused': case 'postcopy-recover': return 'postcopy'
    case 'pre-switchover': case 'device': return 'switchover'
    case 'setup': case undefined: case 'none': return 'preparing'
    default: return 'memory'
  }
}

/**
 * Folds a new QEMU sample into the running progress. QEMU's `remaining` jumps up again at
 * each dirty sync; what the user sees must not run backwards, so the fraction is computed
 * against the largest total seen and clamped to stay monotonic.
 */
export function foldProgress (prev: MigrationProgress | undefined, q: QueryMigrate, diskSentBytes = 0, diskTotalBytes = 0, ramBytes = 0): MigrationProgress {
  const ram = q.ram ?? {}
  const sent = (ram.transferred ?? 0) + diskSentBytes
  // Before RAM migration starts, all of the guest's memory is still to send.
  const ramRemaining = ram.remaining ?? (q.status === 'completed' ? 0 : ramBytes)
  const remaining = Math.max(0, ramRemaining + Math.max(0, diskTotalBytes - diskSentBytes))
  const dirtyRate = (ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096)
  const phase = phaseOf(q.status)
  const raw = phase === 'completed' ? 1 : sent + remaining > 0 ? sent / (sent + remaining) : 0
  const p: MigrationProgress = {
    phase,
    sentBytes: Math.max(prev?.sentBytes ?? 0, sent),
    remainingBytes: remaining,
    dirtyRate,
    iteration: Math.max(prev?.iteration ?? 0, ram['dirty-sync-count'] ?? 0),
    fraction: Math.min(1, Math.max(prev?.fraction ?? 0, raw))
  }
  return p
}

export interface SwitchPolicy {
  mode: MigrationMode
  /** Wall-clock budget before giving up on precopy convergence. */
  deadlineMs: number
  startedAt: number
}

/**
 * Whether to start postcopy now. `postcopy` switches after the first full pass; `hybrid`
 * too (a short precopy, then postcopy); `auto` only when precopy is not converging: past half
 * of its deadline, or after 8 passes with as much left to send as the pass before.
 */
export function shouldStartPostcopy (policy: SwitchPolicy, now: number, p: MigrationProgress, history: MigrationProgress[]): boolean {
  if (p.phase !== 'memory') return false
  if (policy.mode === 'precopy') return false
  if (policy.mode === 'postcopy' || policy.mode === 'hybrid') return p.iteration >= 1
  const elapsed = now - policy.startedAt
  if (elapsed > policy.deadlineMs / 2) return true
  const prev = history.filter(h => h.iteration === p.iteration - 1).at(-1)
  return p.iteration >= 8 && prev !== undefined && p.remainingBytes >= prev.remainingBytes
}

/** QEMU capabilities for a mode. */
export function capabilitiesFor (mode: MigrationMode): Array<{ capability: string, state: boolean }> {
  return [
    { capability: 'events', state: true },
    { capability: 'pause-before-switchover', state: true },
    { capability: 'postcopy-ram', state: mode !== 'precopy' },
    // Precopy alone cannot converge under heavy writes on slow links: throttle the guest instead.
    { capability: 'auto-converge', state: mode === 'precopy' }
  ]
}
