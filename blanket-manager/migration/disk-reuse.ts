/**
 * Pure logic of disk reuse on return (MiyakoDori for disks).
 *
 * When a VM leaves host X in migration G, X keeps the VM's disk images ("departed", tagged G),
 * and the destination Y starts a dirty bitmap `sc-since-G` on each disk at the switchover hold
 * (both copies paused, disks in sync, before the guest runs on Y): from then on it records
 * exactly the guest's writes on Y. When the VM later migrates from Y back to X, X opens the kept
 * images and Y copies only the blocks in the bitmap (incremental backups, repeated until few are
 * left, the last one while the guest is paused at the switchover hold). Any other case (no kept
 * image, no bitmap, a chain X -> Y -> Z -> X, a restarted QEMU) copies the whole disk.
 *
 * The controller keeps one `DiskReuse` per VM: which host holds the kept image and the
 * migration id whose bitmap the VM's current QEMU carries.
 */

const MiB = 1024 * 1024

/** Where the VM's disk image was left, and the migration that left it. */
export interface DiskReuse {
  /** The host that holds the departed image. */
  host: string
  /** The migration that left it; the VM's current QEMU has the bitmap `bitmapName(id)`. */
  id: string
}

/** Dirty-bitmap state of the VM's disks on its current host, as the agent reads it from QEMU. */
export interface DirtyStatus {
  /** Every disk node that can be reused has the bitmap. */
  present: boolean
  /** Sum of the bitmaps' dirty counts (bytes written since arrival). */
  dirtyBytes: number
  /** Sum of the disks' virtual sizes. */
  sizeBytes: number
}

export type ReuseDecision =
  | { reuse: true, id: string, message: string }
  | { reuse: false, message?: string }


export function formatBytes (b: number): string {
  if (b < MiB) return `${(b / 1024).toFixed(b < 10 * 1024 ? 1 : 0)} KiB`
  return `${(b / MiB).toFixed(1)} MiB`
}

/**
 * Whether a migration of a VM with reuse record `prev` to host `to` can send only the dirty
 * blocks. `dirty` is what the source's QEMU reports for bitmap `prev.id` (undefined when it could
 * not be asked). A record for another host is left alone (it is still valid if this migration
 * fails; `obsoleteAfter` says when to drop it).
 */
export function decideReuse (prev: DiskReuse | undefined, to: string, dirty: DirtyStatus | undefined): ReuseDecision {
  if (prev === undefined || prev.host !== to) return { reuse: false }
  if (dirty === undefined || !dirty.present) {
    return { reuse: false, message: `the disk left on ${to} cannot be reused (this copy of the VM has no record of its writes since it left): copying the whole disk` }
  }
  return { reuse: true, id: prev.id, message: `reusing the disk left on ${to}: ${formatBytes(dirty.dirtyBytes)} of ${formatBytes(dirty.sizeBytes)} dirty` }
}

/**
 * After a successful migration from `from` to `to`, the host whose kept image can no longer be
 * reused (the VM's new QEMU has no bitmap for it), if any. The image on `to` was consumed (or
 * replaced) by the incoming migration itself.
 */
export function obsoleteAfter (prev: DiskReuse | undefined, to: string): string | undefined {
  if (prev === undefined || prev.host === to) return undefined
  return prev.host
}

/** The line a user sees about the disks at the end of a migration. */
export function formatDiskSummary (s: { diskSentBytes: number, diskSizeBytes: number, diskReused: boolean }, from: string): string {
  if (s.diskSizeBytes <= 0) return 'no disks'
  const pct = (100 * s.diskSentBytes / s.diskSizeBytes).toFixed(1)
  return s.diskReused
    ? `disks: reused the image left on the destination, sent ${formatBytes(s.diskSentBytes)} of ${formatBytes(s.diskSizeBytes)} (${pct}%)`
    : `disks: copied in full from ${from}, sent ${formatBytes(s.diskSentBytes)} for ${formatBytes(s.diskSizeBytes)}`
}
