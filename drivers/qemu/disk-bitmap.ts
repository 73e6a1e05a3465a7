/**
 * QEMU's half of disk reuse on return (blanket-manager/migration/disk-reuse.ts decides when): the
 * dirty bitmap that records a guest's writes since it arrived, and when to run an incremental pass.
 */
import { isMigrationId } from '../../core/names.ts'

const MiB = 1024 * 1024

/** The QEMU dirty bitmap that records the guest's writes since it arrived in migration `id`. */
export function bitmapName (id: string): string {
  if (!isMigrationId(id)) throw new RangeError(`bad migration id '${id}'`)
  return `sc-since-${id}`
}

/** Dirty bytes at or below which incremental passes stop before memory migration starts. */
export const PASS_CONVERGED_BYTES = MiB
/** Most incremental passes before memory migration starts. */
export const MAX_EARLY_PASSES = 8

/**
 * Whether to start another incremental pass on a disk now.
 * - `disks` phase (before memory): a first pass always (if anything is dirty); then more while the
 *   dirty count is above PASS_CONVERGED_BYTES and falling, at most MAX_EARLY_PASSES.
 * - `memory` phase: whenever more than PASS_CONVERGED_BYTES is dirty (keeps the last pass, made
 *   while the guest is paused, small).
 * The final pass at the switchover hold always runs and is not decided here.
 */
export function shouldRunPass (s: { phase: 'disks' | 'memory', dirtyBytes: number, passes: number, previousDirtyBytes?: number }): boolean {
  if (s.dirtyBytes <= 0) return false
  if (s.phase === 'memory') return s.dirtyBytes > PASS_CONVERGED_BYTES
  if (s.passes === 0) return true
  if (s.dirtyBytes <= PASS_CONVERGED_BYTES || s.passes >= MAX_EARLY_PASSES) return false
  return s.previousDirtyBytes === undefined || s.dirtyBytes < s.previousDirtyBytes
}

