/** Live migration's shared vocabulary: the modes a user picks and the progress every backend reports. */

export type MigrationMode = 'auto' | 'precopy' | 'postcopy' | 'hybrid'
/** Modes offered: each passed the memory-and-disk checksum test (test/e2e/migrate.spec.ts). XBZRLE is not offered. */
export const MIGRATION_MODES: MigrationMode[] = ['auto', 'precopy', 'postcopy', 'hybrid']

export type MigrationPhase = 'preparing' | 'disks' | 'memory' | 'postcopy' | 'switchover' | 'completed' | 'failed' | 'cancelled'

export interface MigrationProgress {
  phase: MigrationPhase
  /** Bytes sent so far (RAM + disk mirror). Never decreases. */
  sentBytes: number
  /** Bytes still to send as QEMU estimates them. */
  remainingBytes: number
  /** Guest dirty rate, bytes/s. */
  dirtyRate: number
  /** Precopy iteration (dirty sync count). */
  iteration: number
  /** 0..1, never decreases. */
  fraction: number
}

