/**
 * Postcopy recovery over QMP: the actions postcopy-recovery.ts decides, on both sides.
 *   destination: `recoverIncoming` pauses its end of a stream that broke (when QEMU has not seen it
 *     yet) and listens again (`migrate-recover`) on a fresh port. The TLS credentials installed for
 *     the migration are still there (they go at finishIncoming), so the new channel runs over the
 *     same pre-shared key;
 *   source: `PostcopyRecovery.step`, called by runOutgoing (migration.ts) with each query-migrate
 *     sample in postcopy: pauses a stalled stream, asks the destination to listen again and
 *     resumes (`migrate` with `resume: true`; the client credentials stay until the migration
 *     ends), reports "paused: stream broke, retrying" and "resumed", and past the bound throws
 *     PostcopyStrandedError without touching either QEMU.
 */
import { SupercloudError } from '../../core/errors.ts'
import type { MigrationProgress } from '../../core/migration.ts'
import { runPaths } from './args.ts'
import { QmpClient } from './qmp.ts'
import { decideRecovery, initialRecovery, POSTCOPY_RECOVERY_BOUND_MS, POSTCOPY_STALL_MS, type RecoveryState } from './postcopy-recovery.ts'

/** The postcopy stream stayed broken past the bound: the guest is split between the two hosts, both QEMUs left running. */
export class PostcopyStrandedError extends SupercloudError {
  constructor (guest: string, destIp: string, brokenMs: number, attempts: number, boundMs: number, lastProblem?: string) {
    super('SC_MIGRATION_POSTCOPY_STRANDED', `migration of ${guest} is stranded in postcopy: its stream to ${destIp} broke ${Math.round(brokenMs / 1000)} s ago and ${attempts} attempt(s) to resume it failed within the bound (${Math.round(boundMs / 1000)} s)${lastProblem !== undefined ? ` (last: ${lastProblem})` : ''}. ` +
      `The guest runs on the destination (${destIp}) but still needs memory pages that only the source QEMU on this host holds: both QEMUs are left running and paused in postcopy (killing either loses the guest). ` +
      'Once the path is back, resume it: on the destination QMP `migrate-recover` with a new tcp URI, then on the source `migrate` with that URI and `resume: true`')
  }
}

/**
 * Destination: lets a broken postcopy migration be resumed on `tcp:<listenIp>:<port>`. Pauses this
 * end first when QEMU still believes the stream alive (`postcopy-active`: a silent drop is noticed
 * by the source's stall detector long before TCP gives up here).
 */
export async function recoverIncoming (runDir: string, listenIp: string, port: number): Promise<void> {
  // Out of band: the destination's main loop may be blocked on a page the broken stream owes it.
  const q = await QmpClient.connect(runPaths(runDir).qmpMigration, { timeoutMs: 5000, commandTimeoutMs: 5000, oob: true })
  try {
    // Refused unless postcopy-active (QEMU saw the break already, or never switched): ignored.
    await q.execute('migrate-pause', undefined, { oob: true }).catch(() => {})
    for (let i = 0; ; i++) {
      try {
        await q.execute('migrate-recover', { uri: `tcp:${listenIp}:${port}` }, { oob: true })
        return
      } catch (err) {
        if (i >= 25 || !/only be run when postcopy is paused/.test(err instanceof Error ? err.message : '')) {
          const status = await q.execute<{ status?: string }>('query-migrate', undefined, { timeoutMs: 1000 }).then(r => r.status, () => 'not answering')
          throw new SupercloudError('SC_MIGRATION_FAILED', `the destination cannot resume the migration (its migration is ${status ?? 'none'}): ${err instanceof Error ? err.message : String(err)}`)
        }
        await new Promise(resolve => setTimeout(resolve, 200))
      }
    }
  } finally {
    await q.close()
  }
}

export interface PostcopyRecoveryOptions {
  guest: string
  destIp: string
  /** Has the destination listen again (recoverIncoming there); resolves with its port. */
  recover?: () => Promise<number>
  boundMs?: number
  stallMs?: number
  /** Reports a message with the latest progress. */
  say: (message: string) => void
}

/** The source side of one postcopy migration's recovery (stateful across samples). */
export class PostcopyRecovery {
  private state: RecoveryState | undefined
  /** Why the last resume attempt failed. */
  private lastProblem: string | undefined
  private readonly policy: { boundMs: number, stallMs: number }

  constructor (private readonly o: PostcopyRecoveryOptions) {
    this.policy = { boundMs: o.boundMs ?? POSTCOPY_RECOVERY_BOUND_MS, stallMs: o.stallMs ?? POSTCOPY_STALL_MS }
  }

  /** One sample of the source's query-migrate while in postcopy. */
  async step (q: QmpClient, status: string, transferred: number, now = Date.now()): Promise<void> {
    this.state ??= initialRecovery(now, transferred)
    const { state, action } = decideRecovery(this.state, { status, transferred, now }, this.policy)
    this.state = state
    switch (action.kind) {
      case 'none': return
      case 'pause':
        this.o.say(`paused: stream broke, retrying (${action.reason})`)
        await q.execute('migrate-pause', undefined, { oob: true, timeoutMs: 5000 }).catch(() => {})
        return
      case 'unstick':
        this.o.say(`paused: stream broke, retrying (${action.reason})`)
        await q.execute('yank', { instances: [{ type: 'migration' }] }, { oob: true, timeoutMs: 5000 }).catch(() => {})
        return
      case 'resume': {
        if (action.attempt === 1 && status === 'postcopy-paused') this.o.say('paused: stream broke, retrying')
        if (this.o.recover === undefined) return
        try {
          const port = await this.o.recover()
          await q.execute('migrate', { uri: `tcp:${this.o.destIp}:${port}`, resume: true })
        } catch (err) {
          this.lastProblem = err instanceof Error ? err.message : String(err)
          this.o.say(`paused: stream broke, retrying (attempt ${action.attempt}: ${this.lastProblem})`)
        }
        return
      }
      case 'resumed':
        this.o.say(`resumed after ${(action.brokenMs / 1000).toFixed(1)} s (${action.attempts} attempt(s))`)
        return
      case 'give-up':
        throw new PostcopyStrandedError(this.o.guest, this.o.destIp, action.brokenMs, action.attempts, this.policy.boundMs, this.lastProblem)
    }
  }
}

/** MigrationProgress with a message (the form onProgress takes). */
export type SaidProgress = MigrationProgress & { message?: string }
