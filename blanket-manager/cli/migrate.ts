/** Terminal display of a migration: a progress bar that never runs backwards, and the summary. */
import type { MigrationProgress } from '../../drivers/qemu/migration-progress.ts'
import type { MigrateResult } from '../controller/index.ts'

function mib (b: number): string { return `${(b / 1048576).toFixed(1)} MiB` }

export function renderBar (vm: string, to: string, p: MigrationProgress, width = 24): string {
  const filled = Math.round(p.fraction * width)
  return `${vm} -> ${to} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(p.fraction * 100).toFixed(0).padStart(3)}% ` +
    `${p.phase} sent ${mib(p.sentBytes)} left ${mib(p.remainingBytes)} dirty ${mib(p.dirtyRate)}/s pass ${p.iteration}`
}

export function makeMigrationBar (vm: string, to: string, out: NodeJS.WriteStream = process.stderr): { update: (p: MigrationProgress) => void, done: () => void } {
  let last = ''
  let lastPhase = ''
  return {
    update (p) {
      const line = renderBar(vm, to, p)
      if (out.isTTY) { out.write(`\r${line}\x1b[K`); last = line } else if (p.phase !== lastPhase) { out.write(line + '\n') }
      lastPhase = p.phase
    },
    done () { if (out.isTTY && last !== '') out.write('\n') }
  }
}

export function formatMigrationSummary (vm: string, r: MigrateResult): string {
  return `migrated ${vm} from ${r.from} to ${r.to}: total ${(r.totalMs / 1000).toFixed(2)} s, downtime ${r.downtimeMs} ms, ` +
    `sent ${mib(r.sentBytes)}, mode ${r.mode}${r.postcopy ? ' (switched to postcopy)' : ''}, ${r.iterations} precopy passes` +
    (r.diskSizeBytes > 0 ? `, disks ${mib(r.diskSentBytes)} of ${mib(r.diskSizeBytes)}${r.diskReused ? ' (reused the image left there)' : ''}` : '')
}
