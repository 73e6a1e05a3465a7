/**
 * The outgoing migrations one backend runs, by guest name: what BackendMigration's `active`,
 * `cancel` and `continue` act on, shared by the QEMU and Xen backends. Pure bookkeeping (an
 * AbortController and a switchover hold per migration), no processes.
 */
import { SupercloudError } from '../core/errors.ts'

/** How long a migration waits at the switchover for `continue` before it fails. */
export const SWITCHOVER_HOLD_MS = 30_000

export interface OutgoingSession {
  /** Aborted by `cancel(name)` or by the caller's signal. */
  readonly signal: AbortSignal
  /**
   * The switchover is reached: calls `onSwitchover`, then, when `hold`, waits for
   * `continue(name)` (rejects with SC_MIGRATION_FAILED after holdMs).
   */
  switchover: (p: { hold: boolean, onSwitchover?: () => void }) => Promise<void>
}

interface Entry {
  ac: AbortController
  release?: () => void
}

export class OutgoingSessions {
  private readonly sessions = new Map<string, Entry>()

  constructor (private readonly holdMs = SWITCHOVER_HOLD_MS) {}

  /**
   * Runs `fn` as the outgoing migration of `name` (SC_MIGRATION_IN_PROGRESS when one runs);
   * `signal` cancels it too. The session ends when `fn` settles.
   */
  async run<T> (name: string, signal: AbortSignal | undefined, fn: (s: OutgoingSession) => Promise<T>): Promise<T> {
    if (this.sessions.has(name)) throw new SupercloudError('SC_MIGRATION_IN_PROGRESS', `${name} is already migrating`)
    const entry: Entry = { ac: new AbortController() }
    this.sessions.set(name, entry)
    const onAbort = (): void => { entry.ac.abort() }
    if (signal?.aborted === true) onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      return await fn({
        signal: entry.ac.signal,
        switchover: async p => {
          p.onSwitchover?.()
          if (p.hold) await this.hold(entry)
        }
      })
    } finally {
      signal?.removeEventListener('abort', onAbort)
      this.sessions.delete(name)
    }
  }

  active (name: string): boolean {
    return this.sessions.has(name)
  }

  cancel (name: string): void {
    const e = this.sessions.get(name)
    if (e === undefined) throw new SupercloudError('SC_MIGRATION_NOT_RUNNING', `${name} is not migrating from this host`)
    e.ac.abort()
  }

  continue (name: string): void {
    const e = this.sessions.get(name)
    if (e?.release === undefined) throw new SupercloudError('SC_MIGRATION_NOT_HELD', `${name} is not waiting at switchover`)
    e.release()
  }

  /** Waits at the switchover until the controller calls vm.migrate.continue (entry.release), at most holdMs. */
  private async hold (entry: Entry): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new SupercloudError('SC_MIGRATION_FAILED', `the controller did not confirm the switchover within ${Math.round(this.holdMs / 1000)} s`)), this.holdMs)
      entry.release = () => { clearTimeout(timer); resolve() }
    })
  }
}
