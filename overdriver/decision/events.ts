/**
 * Events the overload controller emits, as plain objects (the controller's event bus adds
 * sequence numbers). `atMs` is the end of the monitoring interval that caused the event.
 */
import type { EpisodeClass } from './window.ts'

interface Base { vm: string, host: string, atMs: number }

export type OverdriverEvent =
  | Base & { type: 'overload.started', opsPerSec: number }
  | Base & { type: 'overload.classified', class: EpisodeClass, durationMs: number, overloadedInWindow: number, thresholdMs: number, by?: 'window' | 'duration' }
  | Base & { type: 'overload.ended', class: EpisodeClass, durationMs: number }
  | Base & { type: 'coopswap.on', reason: string }
  | Base & { type: 'coopswap.off', reason: string }
  | Base & { type: 'coopswap.unavailable', reason: string }
  | Base & { type: 'threshold.changed', fromMs: number, toMs: number, samples: number, meanMs: number, sigmaMs: number }
  | Base & { type: 'migration.decided', move: string, target: string, relieves: string, bytes: number, reason: string }
  | Base & { type: 'migration.blocked', reason: string }
  /** A migration decided at `sinceMs` was never reported done or failed within the policy's timeout: it may be decided again. */
  | Base & { type: 'migration.expired', move: string, target: string, sinceMs: number }

export type OverdriverEventType = OverdriverEvent['type']

/** What the agent and the controller should do, decided once per VM per interval. */
export type OverdriverAction =
  | { kind: 'coop-swap-on', vm: string, reason: string }
  | { kind: 'coop-swap-off', vm: string, reason: string }
  /**
   * Live-migrate `vm` to `target`. `relieves` is the overloaded VM: `vm` itself, or a
   * co-located VM whose departure frees memory so `relieves` can be ballooned up to
   * `growToBytes` on its host.
   */
  | { kind: 'migrate', vm: string, target: string, relieves: string, growToBytes: number, reason: string }
