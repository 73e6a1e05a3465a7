/** The controller's public option and result types (the CLI, the server and tests use them). */
import type { MigrationMode, MigrationProgress } from '../../core/migration.ts'
import type { LockWait } from '../state/wait.ts'
import type { MigrationSummary } from '../../drivers/qemu/migration.ts'
import type { OperationOptions, ProgressEvent } from '../../core/progress.ts'
import type { Plan } from '../planner/plan.ts'
import { CancelledError } from '../../core/errors.ts'
import { concurrencyLimit, DEFAULT_HOST_CONCURRENCY, settleLimited } from '../../core/concurrency.ts'
import type { VmInfo } from '../agent/protocol.ts'

export interface ControllerOptions {
  /** Override the state root (tests); default from the environment. */
  env?: NodeJS.ProcessEnv
  /** Where the state lives: a postgres:// URL (the spec's `state:`); default SUPERCLOUD_STATE, else the SQLite file. */
  state?: string
  onProgress?: (ev: ProgressEvent) => void
}

export interface MigrateOptions {
  mode?: MigrationMode
  maxDowntimeMs?: number
  /** Bytes/s. */
  bandwidth?: number
  deadlineMs?: number
  /** Streams in clear text instead of TLS (benchmarks comparing the two; no CLI flag). */
  clearText?: boolean
  signal?: AbortSignal
  onProgress?: (p: MigrationProgress) => void
  /** Waiting while an `up` or `down` holds the supercloud lock (default: refused after 5 s). */
  lockWait?: LockWait
}

export interface MigrateResult extends MigrationSummary {
  from: string
  to: string
}

export interface UpOptions extends OperationOptions {
  /** The plan, as lines (describePlan) and as planned, before anything is applied. */
  onPlan?: (lines: string[], plan: Plan) => void
  /** Apply a plan that destroys data without asking. */
  yes?: boolean
  /** Asked when the plan destroys data (the CLI asks y/N on a terminal); without it such a plan is refused. */
  confirm?: (lost: string[]) => Promise<boolean>
  /** Re-create unreachable hosts (their guests' data is lost). */
  repair?: boolean
  /** VMs to replace though they could be kept (`--replace vm/NAME`). */
  replace?: string[]
  /** Waiting while another process holds the supercloud lock or moves a VM (default: refused at once). */
  lockWait?: LockWait
}

/** `down`'s options. */
export interface DownOptions extends OperationOptions {
  /** Waiting while another process holds the supercloud lock or moves a VM (default: refused at once). */
  lockWait?: LockWait
}

export interface UpResult {
  plan: string[]
  applied: number
}

export interface HostStatus {
  name: string
  site: string
  driver: string
  address?: string
  status: string
  health: 'running' | 'gone' | 'unreachable' | 'unknown'
  accel?: string
  accelReason?: string
}

export interface VmStatus {
  name: string
  host: string
  status: string
  state: VmInfo['state'] | 'unknown'
  addresses: string[]
  memory?: { requestedBytes: number, allocatedBytes: number }
  cpus?: number
  accel?: string
  error?: string
}

export interface StatusReport {
  name: string
  prefix?: string
  stateFile: string
  hosts: HostStatus[]
  vms: VmStatus[]
}

/** Default time a guest may take to print its ready marker (TCG on a busy 2-core machine). */
export function bootTimeoutMs (env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SUPERCLOUD_BOOT_TIMEOUT_MS ?? '')
  return Number.isFinite(v) && v > 0 ? v : 180000
}

/** Hosts the controller talks to at once: `SUPERCLOUD_HOST_CONCURRENCY`, default 16 (docs/scale.md). */
export function hostConcurrency (env: NodeJS.ProcessEnv = process.env): number {
  return concurrencyLimit(env.SUPERCLOUD_HOST_CONCURRENCY, DEFAULT_HOST_CONCURRENCY)
}

/** Waits for all; rethrows the first failure (others were already recorded in state). */
export async function allSettledOrThrow (ps: Array<Promise<unknown>>): Promise<void> {
  throwFirstFailure(await Promise.allSettled(ps))
}

/** allSettledOrThrow over `items.map(fn)` with at most `limit` calls running at once: every item is tried. */
export async function settleLimitedOrThrow<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  throwFirstFailure(await settleLimited(items, limit, fn))
}

/** Rethrows the first failure that is not a cancellation, else the first cancellation. */
function throwFirstFailure (rs: Array<PromiseSettledResult<unknown>>): void {
  const failed = rs.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map(r => r.reason as Error)
  const real = failed.find(e => !(e instanceof CancelledError))
  if (real !== undefined) throw real
  if (failed[0] !== undefined) throw failed[0]
}
