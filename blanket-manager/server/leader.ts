/**
 * One active `serve` per supercloud: several may run (on several operators' machines); the one
 * holding the leadership lock (StateLocks.takeLeader: an advisory lock on PostgreSQL, a kernel
 * lock on SQLite, both free the moment the holder dies) runs the Overdriver loop and the stats
 * poller, the others serve the dashboard from the shared state and try again every `retryMs`,
 * so a standby takes over within about `retryMs` of the leader's death.
 */
import { StateLockedError } from '../../core/errors.ts'
import type { StateLocks } from '../state/types.ts'

export interface LeadershipOptions {
  /** How often a standby tries to take over (default 2 s). */
  retryMs?: number
  /** Called once, when this process becomes the leader. */
  onLead: () => void | Promise<void>
  log?: (line: string) => void
}

export interface Leadership {
  leading: () => boolean
  /** Stops trying; a leader lets the lock go. */
  stop: () => void
}

export function seekLeadership (locks: StateLocks, opts: LeadershipOptions): Leadership {
  const log = opts.log ?? (() => {})
  let release: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  let said = ''
  const attempt = (): void => {
    try {
      release = locks.takeLeader()
    } catch (err) {
      if (!(err instanceof StateLockedError)) { log(`leadership: ${(err as Error).message}`); return }
      if (err.message !== said) { said = err.message; log(`standby: ${err.message.replace(/; wait for it.*$/, '')} leads; taking over when it stops`) }
      return
    }
    if (timer !== undefined) clearInterval(timer)
    timer = undefined
    log('leading: this serve runs the Overdriver loop and the pollers')
    void Promise.resolve(opts.onLead()).catch((err: unknown) => { log(`leadership: ${(err as Error).message}`) })
  }
  attempt()
  if (release === undefined) timer = setInterval(attempt, opts.retryMs ?? 2000)
  return {
    leading: () => release !== undefined,
    stop: () => {
      if (timer !== undefined) clearInterval(timer)
      release?.()
      release = undefined
    }
  }
}
