/**
 * Live migration of a QEMU guest with its local disks, over QMP (runs in the host agent).
 * Destination: guest started with `-incoming defer`, its disks exported over NBD.
 * Source: each disk mirrored to the destination's NBD export (`blockdev-mirror`), RAM sent
 * by QEMU's migration with `pause-before-switchover`, so disks and memory switch together:
 * at pre-switchover the mirrors are completed, the caller's switchover hook runs (VirtualWire
 * re-points sister endpoints), then the migration continues.
 * Any failure or cancel before switchover leaves the guest running on the source.
 */
import { QmpClient } from './qmp.ts'
import { runPaths } from './args.ts'
import { CancelledError, SupercloudError } from '../../blanket-manager/errors.ts'
import { capabilitiesFor, foldProgress, shouldStartPostcopy, type MigrationMode, type MigrationProgress, type QueryMigrate } from '../../blanket-manager/migration/progress.ts'

export class MigrationError extends SupercloudError {
  constructor (message: string, cause?: unknown) {
    super('SC_MIGRATION_FAILED', message, cause !== undefined ? { cause } : undefined)
  }
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function migrationQmp (runDir: string): Promise<QmpClient> {
  return await QmpClient.connect(runPaths(runDir).qmpMigration, { timeoutMs: 10000, commandTimeoutMs: 30000 })
}

export interface IncomingOptions {
  runDir: string
  listenIp: string
  migrationPort: number
  nbdPort: number
  /** Block node names of the guest's disks (`drv-<id>`), exported for the source's mirrors. */
  diskNodes: string[]
  mode: MigrationMode
}

/** On the destination, once the guest was started with `incoming: true`. */
export async function startIncoming (o: IncomingOptions): Promise<void> {
  const q = await migrationQmp(o.runDir)
  try {
    await q.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(o.mode).filter(c => c.capability !== 'pause-before-switchover') })
    if (o.diskNodes.length > 0) {
      await q.execute('nbd-server-start', { addr: { type: 'inet', data: { host: o.listenIp, port: String(o.nbdPort) } } })
      for (const node of o.diskNodes) await q.execute('block-export-add', { type: 'nbd', id: `exp-${node}`, 'node-name': node, name: node, writable: true })
    }
    await q.execute('migrate-incoming', { uri: `tcp:${o.listenIp}:${o.migrationPort}` })
  } finally {
    await q.close()
  }
}

/** On the destination after the guest runs there: stop the NBD exports. */
export async function finishIncoming (runDir: string, diskNodes: string[]): Promise<string> {
  const q = await migrationQmp(runDir)
  try {
    for (const node of diskNodes) await q.execute('block-export-del', { id: `exp-${node}` }).catch(() => {})
    if (diskNodes.length > 0) await q.execute('nbd-server-stop').catch(() => {})
    // Without a return path (precopy) the source reports "completed" while the last bytes may
    // still be crossing a slow link: wait until the destination has taken them and runs.
    const until = Date.now() + 60000
    let st = await q.execute<{ status: string }>('query-status')
    while ((st.status === 'inmigrate' || st.status === 'finish-migrate') && Date.now() < until) {
      await sleep(200)
      st = await q.execute<{ status: string }>('query-status')
    }
    return st.status
  } finally {
    await q.close()
  }
}

export interface OutgoingOptions {
  runDir: string
  destIp: string
  migrationPort: number
  nbdPort: number
  diskNodes: string[]
  /** Guest memory size, for progress before QEMU reports RAM figures. */
  ramBytes: number
  mode: MigrationMode
  maxDowntimeMs: number
  /** Bytes/s; undefined = unlimited. */
  bandwidth?: number
  deadlineMs: number
  signal?: AbortSignal
  onProgress?: (p: MigrationProgress) => void
  /** Runs while both sides are paused, after disks are synchronised and before the switch. */
  onSwitchover?: () => Promise<void>
}

export interface MigrationSummary {
  mode: MigrationMode
  /** Whether postcopy was used (auto/hybrid may or may not). */
  postcopy: boolean
  totalMs: number
  /** QEMU's measured downtime. */
  downtimeMs: number
  sentBytes: number
  iterations: number
}

/** On the source: mirrors disks, migrates RAM, completes. Cleans up on failure. */
export async function runOutgoing (o: OutgoingOptions): Promise<MigrationSummary> {
  const t0 = Date.now()
  const q = await migrationQmp(o.runDir)
  const mirrors = o.diskNodes.map(n => ({ node: n, target: `mig-${n}`.slice(0, 31), job: `mirror-${n}`.slice(0, 31) }))
  let switched = false
  let postcopy = false
  let progress: MigrationProgress | undefined
  const history: MigrationProgress[] = []
  const aborted = (): boolean => o.signal?.aborted === true
  const report = (p: MigrationProgress): void => { progress = p; history.push(p); o.onProgress?.(p) }
  const cleanup = async (): Promise<void> => {
    await q.execute('migrate_cancel').catch(() => {})
    for (const m of mirrors) {
      await q.execute('block-job-cancel', { device: m.job, force: true }).catch(() => {})
    }
    await sleep(200)
    for (const m of mirrors) await q.execute('blockdev-del', { 'node-name': m.target }).catch(() => {})
    // The guest keeps (or resumes) running on the source.
    const st = await q.execute<{ status: string }>('query-status').catch(() => ({ status: 'unknown' }))
    if (st.status !== 'running' && st.status !== 'unknown') await q.execute('cont').catch(() => {})
  }
  try {
    // Disks first: mirror each to the destination's export until in sync.
    report({ phase: 'preparing', sentBytes: 0, remainingBytes: 0, dirtyRate: 0, iteration: 0, fraction: 0 })
    for (const m of mirrors) {
      await q.execute('blockdev-add', { driver: 'nbd', 'node-name': m.target, server: { type: 'inet', host: o.destIp, port: String(o.nbdPort) }, export: m.node })
      await q.execute('blockdev-mirror', { 'job-id': m.job, device: m.node, target: m.target, sync: 'full', 'auto-dismiss': true })
    }
    const diskTotal = async (): Promise<{ sent: number, total: number, ready: boolean }> => {
      if (mirrors.length === 0) return { sent: 0, total: 0, ready: true }
      const jobs = await q.execute<Array<{ device: string, offset: number, len: number, ready: boolean }>>('query-block-jobs')
      const ours = jobs.filter(j => mirrors.some(m => m.job === j.device))
      return { sent: ours.reduce((a, j) => a + j.offset, 0), total: ours.reduce((a, j) => a + j.len, 0), ready: ours.length === mirrors.length && ours.every(j => j.ready) }
    }
    for (;;) {
      if (aborted()) throw new CancelledError('migration')
      const d = await diskTotal()
      report(foldProgress(progress, { status: 'setup' }, d.sent, d.total, o.ramBytes))
      if (d.ready) break
      if (Date.now() - t0 > o.deadlineMs) throw new MigrationError(`disk mirror not in sync within the deadline (${o.deadlineMs} ms)`)
      await sleep(200)
    }

    // Memory.
    await q.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(o.mode) })
    const params: Record<string, unknown> = { 'downtime-limit': Math.max(1, Math.round(o.maxDowntimeMs)) }
    if (o.bandwidth !== undefined) params['max-bandwidth'] = Math.round(o.bandwidth)
    await q.execute('migrate-set-parameters', params)
    await q.execute('migrate', { uri: `tcp:${o.destIp}:${o.migrationPort}` })
    const policy = { mode: o.mode, deadlineMs: o.deadlineMs, startedAt: Date.now() }
    for (;;) {
      if (aborted() && !switched) throw new CancelledError('migration')
      const info = await q.execute<QueryMigrate>('query-migrate')
      const d = await diskTotal()
      const p = foldProgress(progress, info, d.sent, d.total, o.ramBytes)
      report(p)
      if (info.status === 'failed') throw new MigrationError(`QEMU reports the migration failed: ${info['error-desc'] ?? 'no reason given'}`)
      if (info.status === 'cancelled') throw new CancelledError('migration')
      if (info.status === 'pre-switchover') {
        // Both sides paused: finish the disk mirrors (in sync), then let the caller re-point the network.
        for (const m of mirrors) await q.execute('block-job-cancel', { device: m.job })
        for (let i = 0; i < 100 && (await q.execute<unknown[]>('query-block-jobs')).length > 0; i++) await sleep(50)
        // Until QEMU is told to continue, the source copy is still authoritative: a failure in the
        // hook (the controller never confirmed) cancels and resumes the guest on the source.
        await o.onSwitchover?.()
        switched = true
        await q.execute('migrate-continue', { state: 'pre-switchover' })
      } else if (info.status === 'completed') {
        for (const m of mirrors) await q.execute('blockdev-del', { 'node-name': m.target }).catch(() => {})
        return {
          mode: o.mode,
          postcopy,
          totalMs: Date.now() - t0,
          downtimeMs: info.downtime ?? 0,
          sentBytes: p.sentBytes,
          iterations: p.iteration
        }
      } else if (!postcopy && shouldStartPostcopy(policy, Date.now(), p, history)) {
        await q.execute('migrate-start-postcopy')
        postcopy = true
      } else if (!switched && Date.now() - t0 > o.deadlineMs) {
        throw new MigrationError(`migration did not converge within the deadline (${o.deadlineMs} ms; ${p.remainingBytes} bytes left, dirty rate ${Math.round(p.dirtyRate)} B/s); the VM keeps running on the source`)
      }
      await sleep(100)
    }
  } catch (err) {
    if (!switched) await cleanup()
    throw err
  } finally {
    await q.close()
  }
}

/** Cancels a running outgoing migration (before switchover). */
export async function cancelOutgoing (runDir: string): Promise<void> {
  const q = await migrationQmp(runDir)
  try {
    await q.execute('migrate_cancel')
  } finally {
    await q.close()
  }
}
