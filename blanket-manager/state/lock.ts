/**
 * Locks held by the kernel: an exclusive SQLite transaction on a lock file (better-sqlite3;
 * SQLite takes a POSIX fcntl write lock on the file), kept open while the lock is held. The
 * kernel drops the lock the moment its holder dies (kill -9 included), so a lock left by a dead
 * process is simply free: there is no stale-lock takeover (check, unlink, create) that two
 * controllers could both win. Beside each lock file a pid file carries the holder's pid, for
 * the message only; it decides nothing. Lock files are never removed while the supercloud
 * exists (removing one could let two processes lock two different files of one name).
 *
 * The supercloud's exclusive lock (one mutating command at a time) is `<dir>/lock.db`; the
 * per-VM move locks (vm-lock.ts) use the same mechanism. Within one process a lock is
 * re-entrant (several StateStores of one supercloud, as tests and a `serve` with its operations
 * open them): each take needs its release.
 */
import Database from 'better-sqlite3'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { StateLockedError } from '../../core/errors.ts'

interface Held { db: Database.Database, count: number }

/** Locks this process holds, by lock file path. */
const held = new Map<string, Held>()

/** A lock file and the pid file naming its holder. */
export interface LockFiles {
  lock: string
  pid: string
}

function isBusy (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED'
}

/** Takes the kernel lock of `files` (throws `busy(holder pid)` when another process holds it); returns its release. */
export function takeKernelLock (files: LockFiles, busy: (pid: number) => Error): () => void {
  let h = held.get(files.lock)
  if (h === undefined) {
    const db = new Database(files.lock, { timeout: 0 })
    try {
      db.exec('BEGIN EXCLUSIVE')
    } catch (err) {
      db.close()
      if (!isBusy(err)) throw err
      throw busy(holderPid(files.pid))
    }
    writeFileSync(files.pid, String(process.pid), { mode: 0o600 })
    h = { db, count: 0 }
    held.set(files.lock, h)
  }
  h.count++
  let released = false
  const mine = h
  return () => {
    if (released) return
    released = true
    if (--mine.count > 0) return
    held.delete(files.lock)
    rmSync(files.pid, { force: true })
    try { mine.db.exec('ROLLBACK') } catch { /* closing releases it anyway */ }
    mine.db.close()
  }
}

/** The pid of another process holding the lock of `files`, or undefined when it is free (or held by this process). */
export function otherHolder (files: LockFiles): number | undefined {
  if (held.has(files.lock)) return undefined
  let pid: number | undefined
  try {
    takeKernelLock(files, p => { pid = p; return new Error('held') })()
  } catch (err) {
    if (pid === undefined) throw err
  }
  return pid
}

/** The files of the supercloud's exclusive lock in `dir`. */
export function stateLockFiles (dir: string): LockFiles {
  return { lock: join(dir, 'lock.db'), pid: join(dir, 'lock') }
}

/** Takes the lock of the state in `dir` (throws StateLockedError when another process holds it); returns its release. */
export function takeStateLock (dir: string, statePath: string): () => void {
  return takeKernelLock(stateLockFiles(dir), pid => new StateLockedError(statePath, pid))
}

function holderPid (pidFile: string): number {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : -1
  } catch {
    return -1
  }
}
