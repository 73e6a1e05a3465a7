/**
 * Locks held by the kernel: an exclusive SQLite transaction on a lock file (better-sqlite3;
 * SQLite takes a POSIX fcntl write lock on the file), kept open while the lock is held. The
 * kernel drops the lock the moment its holder dies (kill -9 included), so a lock left by a dead
 * process is simply free: there is no stale-lock takeover (check, unlink, create) that two
 * controllers could both win. Beside each lock file a pid file names the holder (pid,
 * user@machine, since when, what for: holderText), for the message only; it decides nothing.
 * Lock files are never removed while the supercloud exists (removing one could let two
 * processes lock two different files of one name).
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
import { operatorName } from './common.ts'
import type { LockHolder } from './types.ts'

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

/** Takes the kernel lock of `files` (throws `busy(holder)` when another process holds it); returns its release. */
export function takeKernelLock (files: LockFiles, busy: (holder: LockHolder) => Error, purpose?: string): () => void {
  let h = held.get(files.lock)
  if (h === undefined) {
    const db = new Database(files.lock, { timeout: 0 })
    try {
      db.exec('BEGIN EXCLUSIVE')
    } catch (err) {
      db.close()
      if (!isBusy(err)) throw err
      throw busy(readHolder(files.pid))
    }
    writeFileSync(files.pid, holderText({ pid: process.pid, who: operatorName(), since: new Date().toISOString(), ...(purpose !== undefined ? { purpose } : {}) }), { mode: 0o600 })
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

/** Another process holding the lock of `files`, or undefined when it is free (or held by this process). */
export function otherHolder (files: LockFiles): LockHolder | undefined {
  if (held.has(files.lock)) return undefined
  let holder: LockHolder | undefined
  try {
    takeKernelLock(files, h => { holder = h; return new Error('held') })()
  } catch (err) {
    if (holder === undefined) throw err
  }
  return holder
}

/** The files of the supercloud's exclusive lock in `dir`. */
export function stateLockFiles (dir: string): LockFiles {
  return { lock: join(dir, 'lock.db'), pid: join(dir, 'lock') }
}

/** Takes the lock of the state in `dir` (throws StateLockedError when another process holds it); returns its release. */
export function takeStateLock (dir: string, statePath: string, purpose?: string): () => void {
  return takeKernelLock(stateLockFiles(dir), h => new StateLockedError(statePath, h.pid, h), purpose)
}

/**
 * The pid file's text: the pid on the first line (what older versions wrote, and all they
 * read), then who holds the lock, since when and what for, one `key value` per line.
 */
export function holderText (h: LockHolder): string {
  return [String(h.pid), ...(h.who !== undefined ? [`who ${h.who}`] : []), ...(h.since !== undefined ? [`since ${h.since}`] : []), ...(h.purpose !== undefined ? [`purpose ${h.purpose.replace(/\s+/g, ' ')}`] : [])].join('\n') + '\n'
}

/** Reads holderText back (pid -1: none readable; a bare pid from an older version gives the pid alone). */
export function parseHolder (text: string): LockHolder {
  const [first = '', ...rest] = text.split('\n')
  const pid = Number(first.trim())
  const h: LockHolder = { pid: Number.isInteger(pid) && pid > 0 ? pid : -1 }
  for (const line of rest) {
    const m = /^(who|since|purpose) (.+)$/.exec(line.trim())
    if (m?.[1] !== undefined && m[2] !== undefined) h[m[1] as 'who' | 'since' | 'purpose'] = m[2].slice(0, 200)
  }
  return h
}

function readHolder (pidFile: string): LockHolder {
  try {
    return parseHolder(readFileSync(pidFile, 'utf8'))
  } catch {
    return { pid: -1 }
  }
}
