/**
 * Live migration of a QEMU guest with its local disks, over QMP (runs in the host agent).
 * Destination: guest started with `-incoming defer`, its disks exported over NBD.
 * Source: each disk mirrored to the destination's NBD export (`blockdev-mirror`), RAM sent
 * by QEMU's migration with `pause-before-switchover`, so disks and memory switch together:
 * at pre-switchover the mirrors are completed, the caller's switchover hook runs (VirtualWire
 * re-points sister endpoints), then the migration continues.
 * Any failure or cancel before switchover leaves the guest running on the source.
 * Both streams run over TLS with the migration's pre-shared key (migration-tls.ts) unless the
 * caller asked for clear text (`security: 'off'`).
 *
 * Disk reuse on return (blanket-manager/migration/disk-reuse.ts): the destination starts a dirty
 * bitmap on each disk at the switchover hold (`markArrival`); a later migration back to a host
 * that kept the disk image copies only the bitmap's blocks (`incremental`: `blockdev-backup`
 * with `sync: incremental`, repeated, the last pass while the guest is paused at the hold).
 */
import { QmpClient, type QmpEvent } from './qmp.ts'
import { runPaths } from './args.ts'
import { CancelledError, SupercloudError } from '../../core/errors.ts'
import { bitmapName, shouldRunPass } from './disk-bitmap.ts'
import { capabilitiesFor, foldProgress, shouldStartPostcopy, type MigrationMode, type MigrationProgress, type QueryMigrate } from './migration-progress.ts'
import type { MigrationSummary } from '../hypervisor.ts'
import type { MigrationSecurity } from '../../core/migration.ts'
import { migrationTlsParams, nbdServerArgs, nbdTargetArgs } from './migration-tls.ts'
import { dropCreds, installCreds } from './migration-tls-creds.ts'
export type { MigrationSummary } from '../hypervisor.ts'

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
  /** The migration's TLS credentials (the destination admits only their identity), or 'off'. */
  security: MigrationSecurity
}

/** On the destination, once the guest was started with `incoming: true`. */
export async function startIncoming (o: IncomingOptions): Promise<void> {
  const q = await migrationQmp(o.runDir)
  try {
    await q.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(o.mode).filter(c => c.capability !== 'pause-before-switchover') })
    await installCreds(q, o.runDir, 'server', o.security)
    await q.execute('migrate-set-parameters', migrationTlsParams(o.security))
    if (o.diskNodes.length > 0) {
      await q.execute('nbd-server-start', nbdServerArgs(o.listenIp, o.nbdPort, o.security))
      for (const node of o.diskNodes) await q.execute('block-export-add', { type: 'nbd', id: `exp-${node}`, 'node-name': node, name: node, writable: true })
    }
    await q.execute('migrate-incoming', { uri: `tcp:${o.listenIp}:${o.migrationPort}` })
  } finally {
    await q.close()
  }
}

interface NamedNode {
  'node-name': string
  image?: { 'virtual-size'?: number }
  'dirty-bitmaps'?: Array<{ name: string, count: number, busy?: boolean, recording?: boolean }>
}

async function namedNodes (q: QmpClient): Promise<NamedNode[]> {
  return await q.execute<NamedNode[]>('query-named-block-nodes', { flat: true })
}

/**
 * On the destination at the switchover hold (disks in sync, guest not yet running here): start
 * recording the guest's writes on each disk node in bitmap `sc-since-<id>`.
 */
export async function markArrival (runDir: string, diskNodes: string[], id: string): Promise<void> {
  const q = await migrationQmp(runDir)
  try {
    for (const node of diskNodes) await q.execute('block-dirty-bitmap-add', { node, name: bitmapName(id), persistent: false })
  } finally {
    await q.close()
  }
}

/** Whether every node in `diskNodes` carries bitmap `sc-since-<id>`, its dirty bytes and the nodes' sizes. */
export async function dirtyStatus (runDir: string, diskNodes: string[], id: string): Promise<{ present: boolean, dirtyBytes: number, sizeBytes: number }> {
  const q = await migrationQmp(runDir)
  try {
    return dirtyOf(await namedNodes(q), diskNodes, bitmapName(id))
  } finally {
    await q.close()
  }
}

function dirtyOf (nodes: NamedNode[], diskNodes: string[], bitmap: string): { present: boolean, dirtyBytes: number, sizeBytes: number } {
  let present = diskNodes.length > 0
  let dirtyBytes = 0
  let sizeBytes = 0
  for (const name of diskNodes) {
    const n = nodes.find(x => x['node-name'] === name)
    const b = n?.['dirty-bitmaps']?.find(x => x.name === bitmap)
    if (b === undefined) present = false
    dirtyBytes += b?.count ?? 0
    sizeBytes += n?.image?.['virtual-size'] ?? 0
  }
  return { present, dirtyBytes, sizeBytes }
}

/** On the destination after the guest runs there: stop the NBD exports, drop the credentials. */
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
    await dropCreds(q, runDir)
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
  /** The migration's TLS credentials (this side presents their identity), or 'off'. */
  security: MigrationSecurity
  signal?: AbortSignal
  onProgress?: (p: MigrationProgress) => void
  /** Runs while both sides are paused, after disks are synchronised and before the switch. */
  onSwitchover?: () => Promise<void>
  /**
   * Disks whose image the destination already holds as it was when the VM arrived here in
   * migration `id`: only the blocks in bitmap `sc-since-<id>` are sent (the others are mirrored).
   */
  incremental?: { id: string, nodes: string[] }
}

interface IncrementalDisk {
  node: string
  target: string
  job: string
  /** Passes started. */
  passes: number
  /** Bytes copied by finished passes. */
  copied: number
  /** Dirty bytes left (the bitmap's count when last read). */
  dirty: number
  previousDirty?: number
  running: boolean
  /** The running pass's progress. */
  offset: number
  len: number
}

/** On the source: mirrors disks, migrates RAM, completes. Cleans up on failure. */
export async function runOutgoing (o: OutgoingOptions): Promise<MigrationSummary> {
  const t0 = Date.now()
  const q = await migrationQmp(o.runDir)
  const incNodes = new Set(o.incremental?.nodes ?? [])
  const mirrors = o.diskNodes.filter(n => !incNodes.has(n)).map(n => ({ node: n, target: `mig-${n}`.slice(0, 31), job: `mirror-${n}`.slice(0, 31), offset: 0 }))
  const incs: IncrementalDisk[] = o.diskNodes.filter(n => incNodes.has(n))
    .map(n => ({ node: n, target: `mig-${n}`.slice(0, 31), job: `inc-${n}`.slice(0, 31), passes: 0, copied: 0, dirty: 0, running: false, offset: 0, len: 0 }))
  const bitmap = o.incremental !== undefined ? bitmapName(o.incremental.id) : ''
  let switched = false
  let postcopy = false
  let holdMs: number | undefined
  /** QEMU's bandwidth limit before this migration set one: put back on failure (a later attempt without a limit must not inherit it). */
  let bandwidthBefore: number | undefined
  let progress: MigrationProgress | undefined
  const history: MigrationProgress[] = []
  const aborted = (): boolean => o.signal?.aborted === true
  const report = (p: MigrationProgress): void => { progress = p; history.push(p); o.onProgress?.(p) }
  const cleanup = async (): Promise<void> => {
    // The migration is abandoned: shut its connections first (QMP `yank`). Over a dead link (cut,
    // or a destination that stopped answering) the cancels below would otherwise wait for the
    // in-flight writes until TCP gives up, minutes after the deadline. One instance per call: a
    // list fails whole when one of them does not exist (no migration started yet, say).
    for (const instance of [{ type: 'migration' }, ...[...mirrors, ...incs].map(m => ({ type: 'block-node', 'node-name': m.target }))]) {
      await q.execute('yank', { instances: [instance] }).catch(() => {})
    }
    await q.execute('migrate_cancel').catch(() => {})
    for (const m of mirrors) {
      await q.execute('block-job-cancel', { device: m.job, force: true }).catch(() => {})
    }
    // A cancelled incremental pass gives its blocks back to the bitmap (nothing is lost).
    for (const d of incs) await q.execute('job-cancel', { id: d.job }).catch(() => {})
    await sleep(200)
    for (const d of incs) {
      for (let i = 0; i < 50; i++) {
        const j = (await q.execute<Array<{ id: string, status: string }>>('query-jobs').catch(() => [])).find(x => x.id === d.job)
        if (j === undefined) break
        if (j.status === 'concluded') { await q.execute('job-dismiss', { id: d.job }).catch(() => {}); break }
        await sleep(100)
      }
    }
    for (const m of [...mirrors, ...incs]) await q.execute('blockdev-del', { 'node-name': m.target }).catch(() => {})
    await dropCreds(q, o.runDir)
    if (bandwidthBefore !== undefined) await q.execute('migrate-set-parameters', { 'max-bandwidth': bandwidthBefore }).catch(() => {})
    // The guest keeps (or resumes) running on the source.
    const st = await q.execute<{ status: string }>('query-status').catch(() => ({ status: 'unknown' }))
    if (st.status !== 'running' && st.status !== 'unknown') await q.execute('cont').catch(() => {})
  }

  /** Starts an incremental pass: copies the bitmap's blocks as they are now (the bitmap then records only later writes). */
  const startPass = async (d: IncrementalDisk): Promise<void> => {
    await q.execute('blockdev-backup', { 'job-id': d.job, device: d.node, target: d.target, sync: 'incremental', bitmap, 'auto-finalize': true, 'auto-dismiss': false })
    d.passes++
    d.previousDirty = d.dirty
    d.running = true
    d.offset = 0
    d.len = d.dirty
  }
  /** Reads the passes' progress; a finished pass is checked, dismissed and the bitmap's count read again. */
  const pollPasses = async (): Promise<void> => {
    if (incs.length === 0) return
    const jobs = await q.execute<Array<{ id: string, status: string, 'current-progress': number, 'total-progress': number, error?: string }>>('query-jobs')
    for (const d of incs.filter(x => x.running)) {
      const j = jobs.find(x => x.id === d.job)
      if (j === undefined) throw new MigrationError(`incremental copy of ${d.node} vanished`)
      d.offset = j['current-progress']
      d.len = j['total-progress']
      if (j.status !== 'concluded') continue
      await q.execute('job-dismiss', { id: d.job })
      d.running = false
      if (j.error !== undefined) throw new MigrationError(`incremental copy of ${d.node} failed: ${j.error}`)
      d.copied += d.offset
      d.offset = 0
      d.len = 0
    }
    // Idle disks: how much the guest wrote since their last pass started.
    if (incs.some(d => !d.running)) {
      const nodes = await namedNodes(q)
      for (const d of incs.filter(x => !x.running)) d.dirty = dirtyOf(nodes, [d.node], bitmap).dirtyBytes
    }
  }
  const diskTotal = async (): Promise<{ sent: number, total: number, ready: boolean }> => {
    let sent = 0
    let total = 0
    let ready = true
    if (mirrors.length > 0) {
      const jobs = await q.execute<Array<{ device: string, offset: number, len: number, ready: boolean }>>('query-block-jobs')
      for (const m of mirrors) {
        const j = jobs.find(x => x.device === m.job)
        if (j === undefined || !j.ready) ready = false
        if (j !== undefined) { m.offset = j.offset; total += j.len } else total += m.offset
        sent += m.offset
      }
    }
    await pollPasses()
    for (const d of incs) {
      sent += d.copied + d.offset
      total += d.copied + (d.running ? d.len : d.dirty)
    }
    return { sent, total, ready }
  }
  const sizes = async (): Promise<number> => dirtyOf(await namedNodes(q), o.diskNodes, '').sizeBytes
  // QEMU announces every change of migration state (the `events` capability): the loop below
  // wakes on it instead of waiting out its poll interval, so the pause at pre-switchover (the
  // guest is stopped on both sides) starts being handled at once.
  let wake: (() => void) | undefined
  const onEvent = (ev: QmpEvent): void => { if (ev.event === 'MIGRATION') wake?.() }
  q.on('event', onEvent)
  const nap = async (ms: number): Promise<void> => {
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => { wake = undefined; resolve() }, ms)
      wake = () => { clearTimeout(timer); wake = undefined; resolve() }
    })
  }
  try {
    // Disks first: mirror each to the destination's export until in sync; disks the destination
    // kept get their dirty blocks copied instead.
    report({ phase: 'preparing', sentBytes: 0, remainingBytes: 0, dirtyRate: 0, iteration: 0, fraction: 0 })
    if (incs.length > 0) {
      const st = dirtyOf(await namedNodes(q), incs.map(d => d.node), bitmap)
      if (!st.present) throw new MigrationError(`the disks have no dirty bitmap ${bitmap}: the image kept on the destination cannot be updated`)
    }
    await installCreds(q, o.runDir, 'client', o.security)
    for (const m of [...mirrors, ...incs]) await q.execute('blockdev-add', nbdTargetArgs(m.target, o.destIp, o.nbdPort, m.node, o.security))
    for (const m of mirrors) {
      await q.execute('blockdev-mirror', { 'job-id': m.job, device: m.node, target: m.target, sync: 'full', 'auto-dismiss': true })
    }
    await pollPasses()
    for (;;) {
      if (aborted()) throw new CancelledError('migration')
      for (const d of incs) if (!d.running && shouldRunPass({ phase: 'disks', dirtyBytes: d.dirty, passes: d.passes, ...(d.previousDirty !== undefined ? { previousDirtyBytes: d.previousDirty } : {}) })) await startPass(d)
      const d = await diskTotal()
      report(foldProgress(progress, { status: 'setup' }, d.sent, d.total, o.ramBytes))
      if (d.ready && incs.every(x => !x.running)) break
      if (Date.now() - t0 > o.deadlineMs) throw new MigrationError(`disk copy not in sync within the deadline (${o.deadlineMs} ms)`)
      await sleep(200)
    }

    // Memory.
    await q.execute('migrate-set-capabilities', { capabilities: capabilitiesFor(o.mode) })
    const params: Record<string, unknown> = { 'downtime-limit': Math.max(1, Math.round(o.maxDowntimeMs)), ...migrationTlsParams(o.security) }
    if (o.bandwidth !== undefined) {
      bandwidthBefore = (await q.execute<{ 'max-bandwidth'?: number }>('query-migrate-parameters'))['max-bandwidth']
      params['max-bandwidth'] = Math.round(o.bandwidth)
    }
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
        const held = Date.now()
        // Both sides paused: finish the disk mirrors (in sync), then let the caller re-point the network.
        for (const m of mirrors) await q.execute('block-job-cancel', { device: m.job })
        for (let i = 0; ; i++) {
          const left = (await q.execute<Array<{ device: string }>>('query-block-jobs')).filter(j => mirrors.some(m => m.job === j.device))
          if (left.length === 0) break
          if (i >= 600) throw new MigrationError(`disk mirrors did not complete at the switchover: ${left.map(j => j.device).join(', ')}`)
          await sleep(50)
        }
        // Kept disks: the last pass copies what the guest wrote since the previous one; the guest is
        // paused, so afterwards the destination's image equals the disk.
        for (let i = 0; incs.some(x => x.running); i++) {
          if (i >= 1200) throw new MigrationError('incremental disk copies did not finish at the switchover')
          await pollPasses()
          if (incs.some(x => x.running)) await sleep(50)
        }
        await pollPasses()
        for (const x of incs) if (x.dirty > 0) await startPass(x)
        for (let i = 0; incs.some(x => x.running); i++) {
          if (i >= 1200) throw new MigrationError('the last incremental disk copy did not finish at the switchover')
          await sleep(20)
          await pollPasses()
        }
        // Until QEMU is told to continue, the source copy is still authoritative: a failure in the
        // hook (the controller never confirmed) cancels and resumes the guest on the source.
        await o.onSwitchover?.()
        switched = true
        await q.execute('migrate-continue', { state: 'pre-switchover' })
        holdMs = Date.now() - held
      } else if (info.status === 'completed') {
        for (const m of [...mirrors, ...incs]) await q.execute('blockdev-del', { 'node-name': m.target }).catch(() => {})
        await dropCreds(q, o.runDir)
        return {
          mode: o.mode,
          postcopy,
          totalMs: Date.now() - t0,
          downtimeMs: info.downtime ?? 0,
          sentBytes: p.sentBytes,
          iterations: p.iteration,
          diskSentBytes: mirrors.reduce((a, m) => a + m.offset, 0) + incs.reduce((a, x) => a + x.copied, 0),
          diskSizeBytes: await sizes().catch(() => 0),
          diskReused: incs.length > 0,
          ...(holdMs !== undefined ? { switchoverHoldMs: holdMs } : {})
        }
      } else if (!postcopy && shouldStartPostcopy(policy, Date.now(), p, history)) {
        await q.execute('migrate-start-postcopy')
        postcopy = true
      } else if (!switched && Date.now() - t0 > o.deadlineMs) {
        throw new MigrationError(`migration did not converge within the deadline (${o.deadlineMs} ms; ${p.remainingBytes} bytes left, dirty rate ${Math.round(p.dirtyRate)} B/s); the VM keeps running on the source`)
      } else if (!switched && (info.status === 'active' || info.status === 'setup')) {
        // Keep the kept disks close to the guest's disk while memory moves.
        for (const x of incs) if (!x.running && shouldRunPass({ phase: 'memory', dirtyBytes: x.dirty, passes: x.passes })) await startPass(x)
      }
      await nap(100)
    }
  } catch (err) {
    if (!switched) await cleanup()
    throw err
  } finally {
    q.off('event', onEvent)
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
