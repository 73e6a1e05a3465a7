/**
 * The supercloud's exclusive lock (one mutating command at a time), held by the kernel: an
 * exclusive SQLite transaction on `<dir>/lock.db` (better-sqlite3; SQLite takes a POSIX fcntl
 * write lock on the file), kept open while the lock is held. The kernel drops the lock the
 * moment its holder dies (kill -9 included), so a lock left by a dead process is simply free:
 * there is no stale-lock takeover (check, unlink, create) that two controllers could both win.
 * `<dir>/lock` carries the holder's pid, for the message only; it decides nothing.
 *
 * Within one process the lock is re-entrant (several StateStores of one supercloud, as tests
 * and a `serve` with its operations open them): each lock() needs its unlock().
 */
import Database from 'better-sqlite3'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { StateLockedError } from '../../core/errors.ts'

interface Held { db: Database.Database, count: number }

/** Locks this process holds, by lock file path. */
const held = new Map<string, Held>()

/** Takes the lock of the state in `dir` (throws StateLockedError when another process holds it); returns its release. */
export function takeStateLock (dir: string, statePath: string): () => void {
  const path = join(dir, 'lock.db')
  const pidFile = join(dir, 'lock')
  let h = held.get(path)
  if (h === undefined) {
    const db = new Database(path, { timeout: 0 })
    try {
      db.exec('BEGIN EXCLUSIVE')
    } catch (err) {
      db.close()
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' && (err as { code?: string }).code !== 'SQLITE_LOCKED') throw err
      throw new StateLockedError(statePath, holderPid(pidFile))
    }
    writeFileSync(pidFile, String(process.pid), { mode: 0o600 })
    h = { db, count: 0 }
    held.set(path, h)
  }
  h.count++
  let released = false
  const mine = h
  return () => {
    if (released) return
    released = true
    if (--mine.count > 0) return
    held.delete(path)
    rmSync(pidFile, { force: true })
    try { mine.db.exec('ROLLBACK') } catch { /* closing releases it anyway */ }
    mine.db.close()
  }
}

function holderPid (pidFile: string): number {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : -1
  } catch {
    return -1
  }
}
