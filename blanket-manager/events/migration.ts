/**
 * Publishing a migration's events from the controller: `migration.started`, throttled
 * `migration.progress` (at most one per `intervalMs`, and on every phase change, so a long
 * migration does not flood the bounded history), `migration.switchover`, and exactly one of
 * `migration.completed` / `migration.failed` / `migration.cancelled`.
 */
import type { EventHub } from './hub.ts'
import type { EventInputOf } from './schema.ts'

/** The progress fields the controller gets from the source agent (drivers/qemu/migration-progress.ts). */
export interface MigrationProgressLike {
  phase: string
  sentBytes: number
  remainingBytes: number
  dirtyRate?: number
}

/** A progress sample as a `migration.progress` event (total = sent + remaining, as QEMU estimates it). */
export function migrationProgressInput (vm: string, migration: string, p: MigrationProgressLike): EventInputOf<'migration.progress'> {
  const data: EventInputOf<'migration.progress'>['data'] = {
    migration,
    phase: p.phase,
    transferredBytes: p.sentBytes,
    totalBytes: p.sentBytes + Math.max(0, p.remainingBytes),
    remainingBytes: Math.max(0, p.remainingBytes)
  }
  if (p.dirtyRate !== undefined) data.dirtyRate = p.dirtyRate
  return { type: 'migration.progress', vm, data }
}

export interface MigrationReporter {
  readonly id: string
  progress: (p: MigrationProgressLike) => void
  switchover: (downtimeMs?: number) => void
  completed: (s: { totalMs: number, downtimeMs?: number }) => void
  failed: (err: Error & { code?: string }) => void
  cancelled: (reason?: string) => void
}

/**
 * Publishes `migration.started` now and returns the reporter for the rest. `id` defaults to
 * `<vm>-<start time in ms>`. Publishing errors are swallowed: events must never break a migration.
 */
export function reportMigration (hub: EventHub, m: { vm: string, from: string, to: string, reason?: string, id?: string, intervalMs?: number, now?: () => number }): MigrationReporter {
  const now = m.now ?? Date.now
  const id = m.id ?? `${m.vm}-${now()}`
  const interval = m.intervalMs ?? 1000
  let lastAt = -Infinity
  let lastPhase = ''
  let ended = false
  const safe = (fn: () => void): void => { try { fn() } catch { /* the event log is best effort */ } }
  safe(() => hub.publish({ type: 'migration.started', vm: m.vm, host: m.from, data: { migration: id, from: m.from, to: m.to, ...(m.reason !== undefined ? { reason: m.reason } : {}) } }))
  const end = (fn: () => void): void => { if (ended) return; ended = true; safe(fn) }
  return {
    id,
    progress: p => {
      if (ended) return
      const t = now()
      if (p.phase === lastPhase && t - lastAt < interval) return
      lastAt = t
      lastPhase = p.phase
      safe(() => hub.publish(migrationProgressInput(m.vm, id, p)))
    },
    switchover: downtimeMs => { if (!ended) safe(() => hub.publish({ type: 'migration.switchover', vm: m.vm, data: { migration: id, ...(downtimeMs !== undefined ? { downtimeMs } : {}) } })) },
    completed: s => end(() => hub.publish({ type: 'migration.completed', vm: m.vm, host: m.to, data: { migration: id, durationMs: s.totalMs, ...(s.downtimeMs !== undefined ? { downtimeMs: s.downtimeMs } : {}) } })),
    failed: err => end(() => hub.publish({ type: 'migration.failed', vm: m.vm, data: { migration: id, error: err.message.slice(0, 4000), ...(err.code !== undefined ? { code: err.code } : {}) } })),
    cancelled: reason => end(() => hub.publish({ type: 'migration.cancelled', vm: m.vm, data: { migration: id, ...(reason !== undefined ? { reason } : {}) } }))
  }
}
