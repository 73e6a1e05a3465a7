/**
 * After a host's interruption deadline, `serve` looks (through its driver) until the provider
 * took it away, then forgets it (Controller.forgetHost: the row goes when no VM is left on it,
 * else it stays marked failed), so `status` shows it gone rather than a live host.
 */
import type { HostHealth } from '../../drivers/cloud.ts'

export interface ReclaimDeps {
  hostHealth: (host: string) => Promise<HostHealth | undefined>
  forgetHost: (host: string, reason: string) => 'deleted' | 'failed'
  now?: () => number
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export const RECLAIM_POLL_MS = 2000
/** How long after the deadline a host may still run before serve stops looking (EC2 may act late). */
export const RECLAIM_GRACE_MS = 10 * 60_000

const timer = async (ms: number, signal: AbortSignal): Promise<void> => await new Promise(resolve => {
  const t = setTimeout(resolve, ms)
  t.unref()
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(undefined) }, { once: true })
})

/** Waits for the deadline, then for the host to be gone; what it did, or undefined when stopped or still there. */
export async function watchReclaim (d: ReclaimDeps, host: string, deadline: number, signal: AbortSignal, log: (line: string) => void): Promise<'deleted' | 'failed' | undefined> {
  const now = d.now ?? Date.now
  const sleep = d.sleep ?? timer
  await sleep(Math.max(0, deadline - now()), signal)
  while (!signal.aborted && now() <= deadline + RECLAIM_GRACE_MS) {
    let health: HostHealth | undefined
    try { health = await d.hostHealth(host) } catch (err) { log(`interruptions: ${host}: ${(err as Error).message} (looked again)`) }
    if (health === undefined && !signal.aborted) return undefined
    if (health === 'gone') {
      const done = d.forgetHost(host, `reclaimed by the provider at ${new Date(deadline).toISOString()} (interruption notice)`)
      log(`interruptions: ${host} was reclaimed: ${done === 'deleted' ? 'removed from the state' : 'marked failed (VMs were lost with it)'}`)
      return done
    }
    await sleep(RECLAIM_POLL_MS, signal)
  }
  return undefined
}
