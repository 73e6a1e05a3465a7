/**
 * Waiting for a lock another operator holds: a blocked command says who holds what (the
 * StateLockedError or VmMovingError of the store, which names the holder) and tries again every
 * `pollMs` until it gets the lock or its signal fires (Ctrl-C: CancelledError). Without `wait`
 * (`--no-wait`) the first refusal is thrown: SC_STATE_LOCKED / SC_VM_MOVING.
 */
import { CancelledError, StateLockedError, VmMovingError } from '../../core/errors.ts'

export interface LockWait {
  /** Wait for the holder (default false: refuse at once). */
  wait?: boolean
  signal?: AbortSignal
  /** Told when the command is blocked, and again whenever the holder changes. */
  onBlocked?: (err: StateLockedError | VmMovingError) => void
  /** Which refusals are waited for (default: both lock errors). */
  retry?: (err: StateLockedError | VmMovingError) => boolean
  pollMs?: number
}

/** Runs `take` until it gets the lock (see the file comment); returns what it returned. */
export async function waitForLock<T> (take: () => T | Promise<T>, opts: LockWait = {}): Promise<T> {
  let last = ''
  for (;;) {
    try {
      return await take()
    } catch (err) {
      if (!(err instanceof StateLockedError || err instanceof VmMovingError) || opts.wait !== true || opts.retry?.(err) === false) throw err
      if (err.message !== last) { last = err.message; opts.onBlocked?.(err) }
      await pause(opts.pollMs ?? 500, opts.signal)
    }
  }
}

async function pause (ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted === true) throw new CancelledError('waiting for the state lock')
  await new Promise<void>((resolve, reject) => {
    const done = (): void => { clearTimeout(timer); reject(new CancelledError('waiting for the state lock')) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', done); resolve() }, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}
