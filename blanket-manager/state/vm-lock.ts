/**
 * The lock of a VM's move (issue 14): `migrate`, and `serve`'s Overdriver loop around the
 * migrations it decides, hold the lock of the VM they move for the whole move. It is a kernel
 * lock like the supercloud's (lock.ts), one per VM in `<dir>/moves/<vm>.db`, free again the
 * moment its holder dies.
 *
 *   - Two moves of one VM never run at once: the second is refused at once with VmMovingError
 *     naming the holder (it does not wait: a move takes minutes, and once the first ends the VM
 *     is elsewhere, so the second's request, or Overdriver's decision, is stale anyway).
 *   - A move lock is taken only while holding the supercloud lock (for a moment, waiting a few
 *     seconds for it): no move starts while `up` or `down` run (they hold the supercloud lock
 *     for their whole run; the move is refused with StateLockedError).
 *   - `up` and `down`, on taking the supercloud lock, refuse while any VM's move lock is held
 *     by another process (StateStore.lock, movesInProgress).
 *
 * Moves of different VMs run side by side. Within one process a move lock is re-entrant (the
 * Overdriver loop holds it around the migration, whose `migrate` takes it again); one process
 * does not move one VM twice at once because `migrate` claims the VM in the state first.
 */
import { mkdirSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { CancelledError, StateLockedError, VmMovingError } from '../../core/errors.ts'
import { otherHolder, takeKernelLock, takeStateLock, type LockFiles } from './lock.ts'
import type { MoveInProgress, StateLocks } from './types.ts'
import { waitForLock, type LockWait } from './wait.ts'

const MOVES = 'moves'

function moveLockFiles (dir: string, vm: string): LockFiles {
  const base = join(dir, MOVES, encodeURIComponent(vm))
  return { lock: `${base}.db`, pid: `${base}.pid` }
}

export interface MoveLockOptions {
  /** How long to wait for the supercloud lock when another command holds it (default 5 s). */
  waitMs?: number
  /** Wait for the supercloud lock as long as it is held, saying who holds it (`migrate` without --no-wait). */
  wait?: LockWait
  signal?: AbortSignal
}

/**
 * Takes the move lock of `vm` in the supercloud at `dir` (state file `statePath`); returns its
 * release. Throws VmMovingError when another process moves the VM, StateLockedError when the
 * supercloud lock stays held (an `up` or `down` runs).
 */
export async function takeMoveLock (dir: string, statePath: string, vm: string, opts: MoveLockOptions = {}): Promise<() => void> {
  return await takeMoveLockWith(fileLocks(dir, statePath), vm, opts)
}

/** takeMoveLock on any store's locks (SQLite's kernel locks, PostgreSQL's advisory locks). */
export async function takeMoveLockWith (locks: StateLocks, vm: string, opts: MoveLockOptions = {}): Promise<() => void> {
  if (opts.wait?.wait === true) {
    // Only an `up` or `down` holding the supercloud lock is waited for: a second move of one VM is refused at once.
    const once: MoveLockOptions = { waitMs: 0, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) }
    return await waitForLock(async () => await takeMoveLockWith(locks, vm, once), { ...opts.wait, retry: err => err instanceof StateLockedError })
  }
  const until = Date.now() + (opts.waitMs ?? 5000)
  let releaseState: () => void
  for (;;) {
    try {
      releaseState = locks.takeState(`migrate ${vm}`)
      break
    } catch (err) {
      if (!(err instanceof StateLockedError) || Date.now() >= until) throw err
      if (opts.signal?.aborted === true) throw new CancelledError(`waiting for the lock to move ${vm}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  try {
    return locks.takeMove(vm, `migrate ${vm}`)
  } finally {
    releaseState()
  }
}

/** The VMs another process is moving now, with the holders' pids (call while holding the supercloud lock). */
export function movesInProgress (dir: string): MoveInProgress[] {
  let names: string[]
  try {
    names = readdirSync(join(dir, MOVES))
  } catch {
    return []
  }
  const out: MoveInProgress[] = []
  for (const f of names.filter(n => n.endsWith('.db')).sort()) {
    const vm = decodeURIComponent(f.slice(0, -3))
    const holder = otherHolder(moveLockFiles(dir, vm))
    if (holder !== undefined) out.push({ vm, pid: holder.pid, holder })
  }
  return out
}

/** The kernel locks of the SQLite store of the supercloud at `dir` (state file `statePath`). */
export function fileLocks (dir: string, statePath: string): StateLocks {
  return {
    takeState: purpose => takeStateLock(dir, statePath, purpose),
    takeMove: (vm, purpose) => {
      mkdirSync(join(dir, MOVES), { recursive: true, mode: 0o700 })
      return takeKernelLock(moveLockFiles(dir, vm), h => new VmMovingError(vm, h.pid, h), purpose)
    },
    moves: () => movesInProgress(dir),
    takeLeader: () => takeKernelLock({ lock: join(dir, 'leader.db'), pid: join(dir, 'leader') }, h => new StateLockedError(`${statePath} (serve leadership)`, h.pid, h), 'serve')
  }
}
