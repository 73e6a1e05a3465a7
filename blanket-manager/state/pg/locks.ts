/**
 * The locks of a supercloud in PostgreSQL: session-level advisory locks taken on the session's
 * dedicated lock connection, so the server releases them the moment the holder's session ends
 * (the process died, kill -9 included, or its network was cut). Keys: (hash of the schema,
 * hash of the lock's name), the name being `supercloud` or `move:<vm>`.
 *
 * The holder writes who it is into `lock_holders` (pid, user@machine, since, what for) once it
 * has the lock; a blocked command reads the row of the backend that holds the lock now (joined
 * with pg_locks, so a row left by a dead holder is never reported). Each take increments the
 * lock's fencing number (session.ts: writes of a holder that lost its lock are refused).
 * Re-entrant within a process, as SQLite's kernel locks are: each take needs its release.
 */
import { operatorName } from '../common.ts'
import { StateLockedError, VmMovingError } from '../../../core/errors.ts'
import type { LockHolder, MoveInProgress, StateLocks } from '../types.ts'
import type { PgSession } from './session.ts'

/** A 31-bit FNV-1a hash (advisory lock keys are int4 pairs; kept positive). */
export function lockKey (s: string): number {
  let h = 0x811c9dc5
  for (const c of Buffer.from(s)) { h ^= c; h = Math.imul(h, 0x01000193) }
  return h & 0x7fffffff
}

const LIVE = `EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend
  AND l.classid = $1::bigint::oid AND l.objid = h.lock_key::oid AND l.objsubid = 2)`

function holderFromRow (r: Record<string, unknown>): LockHolder {
  return { pid: Number(r.pid), who: String(r.who), since: String(r.since), purpose: String(r.purpose) }
}

export function advisoryLocks (s: PgSession): StateLocks {
  const ns = lockKey(s.schema)

  const holder = (name: string): LockHolder => {
    const r = s.run('lock', `SELECT h.* FROM lock_holders h WHERE h.name = $2 AND ${LIVE}`, [ns, name]).rows[0]
    return r === undefined ? { pid: -1 } : holderFromRow(r)
  }

  const take = (name: string, purpose: string, busy: (h: LockHolder) => Error): () => void => {
    let h = s.held.get(name)
    if (h === undefined) {
      const key = lockKey(name)
      if (s.run('lock', 'SELECT pg_try_advisory_lock($1, $2) AS ok', [ns, key]).rows[0]?.ok !== true) throw busy(holder(name))
      const fence = Number(s.run('lock', `INSERT INTO lock_fences (name, n) VALUES ($1, 1)
        ON CONFLICT (name) DO UPDATE SET n = lock_fences.n + 1 RETURNING n`, [name]).rows[0]?.n)
      s.run('lock', `INSERT INTO lock_holders (name, lock_key, backend, pid, who, since, purpose) VALUES ($1, $2, pg_backend_pid(), $3, $4, $5, $6)
        ON CONFLICT (name) DO UPDATE SET lock_key = excluded.lock_key, backend = excluded.backend, pid = excluded.pid, who = excluded.who, since = excluded.since, purpose = excluded.purpose`,
      [name, key, process.pid, operatorName(), new Date().toISOString(), purpose])
      h = { count: 0, fence, key }
      s.held.set(name, h)
    }
    h.count++
    const mine = h
    let released = false
    return () => {
      if (released) return
      released = true
      if (--mine.count > 0) return
      s.held.delete(name)
      try {
        s.run('lock', 'DELETE FROM lock_holders WHERE name = $1 AND backend = pg_backend_pid()', [name])
        s.run('lock', 'SELECT pg_advisory_unlock($1, $2)', [ns, mine.key])
      } catch { /* the session is gone: so is the lock */ }
    }
  }

  return {
    takeState: purpose => take('supercloud', purpose, h => new StateLockedError(s.where, h.pid, h)),
    takeMove: (vm, purpose) => take(`move:${vm}`, purpose, h => new VmMovingError(vm, h.pid, h)),
    takeLeader: () => take('leader', 'serve', h => new StateLockedError(`${s.where} (serve leadership)`, h.pid, h)),
    moves: (): MoveInProgress[] => s.run('lock', `SELECT h.* FROM lock_holders h WHERE h.name LIKE 'move:%' AND h.backend <> pg_backend_pid() AND ${LIVE} ORDER BY h.name`, [ns]).rows
      .map(r => ({ vm: String(r.name).slice('move:'.length), pid: Number(r.pid), holder: holderFromRow(r) }))
  }
}
