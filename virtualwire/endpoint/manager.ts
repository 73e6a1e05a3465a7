/**
 * The endpoint manager: holds this host's endpoints, applies each accepted write to the
 * kernel (create, re-point, collapse, expand, destroy), persists the configuration to a JSON
 * state file on every change (temp file + rename) and, when opened, reconciles the kernel with
 * the saved configuration (endpoints come back after a restart, stale devices go).
 * Writes are applied one at a time, in arrival order.
 */
import { mkdir, readFile, rename, writeFile, open as openFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { SupercloudError } from '../../core/errors.ts'
import { endpointBridgeName, endpointVxlanName, type EndpointConfig } from '../types.ts'
import {
  CONTROL_FILES, EndpointWriteError, LAST_ERROR_FILE,
  applyCommand, checkCommand, endpointFileName, endpointIdOfFile, formatAddress, formatEndpoint,
  formatLastError, parseAddress, parseConnectorId, parseWrite, type EndpointCommand
} from './interface.ts'
import { describeShape, endpointShape, planFastPath, planFastPaths, type FastPathStep } from './fastpath.ts'
import { IpKernel, type EndpointKernel } from './kernel.ts'
import { describeStep, planEndpoint, planReconcile, type KernelStep, type ObservedLink } from './plan.ts'

export const DEFAULT_ENDPOINT_MTU = 1450
export const STATE_VERSION = 1

export type LogLevel = 'info' | 'warn' | 'error'
export type EndpointLog = (level: LogLevel, msg: string) => void

export interface EndpointManagerOptions {
  /** Kernel-object prefix (the supercloud's): 1-8 of [a-z0-9], starting with a letter. */
  prefix: string
  /** JSON file holding the configuration. */
  statePath: string
  /** MTU of endpoint bridges and VXLAN devices (underlay MTU − 50). */
  mtu?: number
  kernel?: EndpointKernel
  log?: EndpointLog
  /**
   * Connector fast path (`fastpath.ts`): tc redirects between an encapsulated endpoint's one
   * NIC and its VXLAN device, bypassing the bridge. Default true; false keeps every endpoint bridged.
   */
  fastPath?: boolean
}

/** How often the fast path is checked against the kernel besides link events (ms). */
export const FAST_PATH_RESYNC_MS = 15000

/** The state file is unreadable or belongs to another prefix. */
export class EndpointStateError extends SupercloudError {
  constructor (message: string, cause?: unknown) {
    super('SC_VW_ENDPOINT_STATE', message, { cause })
  }
}

/** What the state file holds. */
export interface EndpointState {
  version: number
  prefix: string
  mtu: number
  endpoints: EndpointConfig[]
}

/** Parses and validates a state file's text (pure). */
export function parseState (text: string, source: string): EndpointState {
  let raw: unknown
  try { raw = JSON.parse(text) } catch (err) { throw new EndpointStateError(`${source} is not JSON: ${(err as Error).message}`, err) }
  const o = raw as Partial<EndpointState>
  if (typeof o !== 'object' || o === null || o.version !== STATE_VERSION || typeof o.prefix !== 'string' || !Array.isArray(o.endpoints)) {
    throw new EndpointStateError(`${source} is not an endpoint state file (version ${STATE_VERSION})`)
  }
  const endpoints: EndpointConfig[] = []
  for (const e of o.endpoints as unknown[]) {
    const c = e as { id?: unknown, local?: { ip?: unknown, port?: unknown }, remote?: { ip?: unknown, port?: unknown } }
    const id = parseConnectorId(String(c?.id))
    const local = parseAddress(`${String(c?.local?.ip)}:${String(c?.local?.port)}`)
    const remote = parseAddress(`${String(c?.remote?.ip)}:${String(c?.remote?.port)}`)
    for (const r of [id, local, remote]) if (r instanceof EndpointWriteError) throw new EndpointStateError(`${source}: bad endpoint ${JSON.stringify(e)}: ${r.reason}`)
    endpoints.push({ id: id as number, local: local as EndpointConfig['local'], remote: remote as EndpointConfig['remote'] })
  }
  return { version: STATE_VERSION, prefix: o.prefix, mtu: typeof o.mtu === 'number' ? o.mtu : DEFAULT_ENDPOINT_MTU, endpoints }
}

export function checkEndpointPrefix (prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix)) {
    throw new EndpointStateError(`prefix '${prefix}' must be 1-8 characters of [a-z0-9] starting with a letter (device names must fit 15 characters)`)
  }
}

export interface ReconcileReport {
  applied: string[]
  failed: string[]
}

export class EndpointManager {
  readonly prefix: string
  readonly statePath: string
  readonly mtu: number
  private readonly kernel: EndpointKernel
  private readonly log: EndpointLog
  private endpoints = new Map<number, EndpointConfig>()
  private lastErrorText = ''
  private queue: Promise<unknown> = Promise.resolve()
  private changed = Date.now()
  readonly fastPath: boolean
  /** Last logged shape per endpoint. */
  private readonly shapes = new Map<number, string>()
  private stopWatch: (() => void) | undefined
  private syncTimer: NodeJS.Timeout | undefined
  private resyncTimer: NodeJS.Timeout | undefined

  private constructor (opts: EndpointManagerOptions) {
    checkEndpointPrefix(opts.prefix)
    this.prefix = opts.prefix
    this.statePath = opts.statePath
    this.mtu = opts.mtu ?? DEFAULT_ENDPOINT_MTU
    if (!Number.isInteger(this.mtu) || this.mtu < 68 || this.mtu > 65485) throw new EndpointStateError(`MTU ${this.mtu} is not 68..65485`)
    this.kernel = opts.kernel ?? new IpKernel()
    this.log = opts.log ?? (() => {})
    this.fastPath = opts.fastPath ?? true
  }

  /** Loads the state file (absent: no endpoints) and reconciles the kernel with it. */
  static async open (opts: EndpointManagerOptions): Promise<EndpointManager> {
    const m = new EndpointManager(opts)
    const text = await readFile(m.statePath, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined
      throw new EndpointStateError(`cannot read ${m.statePath}: ${err.message}`, err)
    })
    if (text !== undefined) {
      const st = parseState(text, m.statePath)
      if (st.prefix !== m.prefix) throw new EndpointStateError(`${m.statePath} belongs to prefix '${st.prefix}', not '${m.prefix}'`)
      m.endpoints = new Map(st.endpoints.map(e => [e.id, e]))
    } else {
      await m.persist(m.endpoints)
    }
    const report = await m.reconcile()
    m.log('info', `endpoint manager ${m.prefix}: ${m.endpoints.size} endpoint(s) from ${m.statePath}; reconcile applied ${report.applied.length} step(s)${report.failed.length > 0 ? `, ${report.failed.length} failed` : ''}${m.fastPath ? '' : '; fast path off'}`)
    if (m.fastPath && m.kernel.watch !== undefined) {
      // A NIC attached to (or taken off) an endpoint bridge changes the endpoint's shape.
      m.stopWatch = m.kernel.watch(() => { m.scheduleSync() })
      m.resyncTimer = setInterval(() => { m.scheduleSync() }, FAST_PATH_RESYNC_MS)
      m.resyncTimer.unref()
    }
    return m
  }

  /** Stops watching links (kernel devices and filters stay). */
  close (): void {
    this.stopWatch?.()
    this.stopWatch = undefined
    if (this.syncTimer !== undefined) clearTimeout(this.syncTimer)
    if (this.resyncTimer !== undefined) clearInterval(this.resyncTimer)
  }

  private scheduleSync (): void {
    if (this.syncTimer !== undefined) return
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined
      this.syncFastPaths().catch(err => { this.log('warn', `fast path: ${(err as Error).message}`) })
    }, 50)
  }

  /** Brings every endpoint's fast path in line with what is attached now (queued like writes). */
  async syncFastPaths (): Promise<void> {
    if (!this.fastPath) return
    const run = this.queue.then(async () => {
      const observed = await this.kernel.observe(this.prefix)
      await this.applyFastPath(planFastPaths(this.list(), observed, this.prefix))
      for (const e of this.list()) this.noteShape(e.id, e, observed)
    })
    this.queue = run.catch(() => {})
    await run
  }

  /** Fast-path steps are best effort: a failure is logged, the bridge keeps carrying frames. */
  private async applyFastPath (steps: FastPathStep[]): Promise<void> {
    for (const s of steps) {
      try {
        await this.kernel.apply(s)
      } catch (err) {
        this.log('warn', `fast path: ${describeStep(s)} failed: ${(err as Error).message}`)
      }
    }
  }

  private noteShape (id: number, desired: EndpointConfig | undefined, observed: readonly ObservedLink[]): void {
    const text = describeShape(endpointShape(id, desired, observed, this.prefix))
    if (desired === undefined) { this.shapes.delete(id); return }
    if (this.shapes.get(id) === text) return
    this.shapes.set(id, text)
    this.log('info', `endpoint ${id}: ${text}`)
  }

  list (): EndpointConfig[] {
    return [...this.endpoints.values()].sort((a, b) => a.id - b.id)
  }

  get (id: number): EndpointConfig | undefined {
    return this.endpoints.get(id)
  }

  get lastError (): string { return this.lastErrorText }

  /** Time of the last change (endpoint set or last_error), ms since epoch. */
  get changedAt (): number { return this.changed }

  /** Names in the interface root: the control files, then one file per endpoint. */
  files (): string[] {
    return [...CONTROL_FILES, ...this.list().map(e => endpointFileName(e.id))]
  }

  /** Content of a file in the root; undefined when it does not exist. Control files other than last_error read empty. */
  read (file: string): string | undefined {
    if (file === LAST_ERROR_FILE) return this.lastErrorText === '' ? '' : this.lastErrorText + '\n'
    if ((CONTROL_FILES as readonly string[]).includes(file)) return ''
    const id = endpointIdOfFile(file)
    const e = id === undefined ? undefined : this.endpoints.get(id)
    return e === undefined ? undefined : formatEndpoint(e, this.prefix) + '\n'
  }

  /**
   * Applies one line written to `file`. Throws EndpointWriteError (errno + reason), which is
   * also kept as `last_error` and logged.
   */
  async write (file: string, line: string): Promise<void> {
    const run = this.queue.then(async () => { await this.writeNow(file, line) })
    this.queue = run.catch(() => {})
    await run
  }

  /** Records a refusal made outside `write` (e.g. opening an unknown endpoint file). */
  refuse (file: string, line: string, err: EndpointWriteError): EndpointWriteError {
    this.lastErrorText = formatLastError(file, line, err)
    this.changed = Date.now()
    this.log('warn', `refused: ${this.lastErrorText}`)
    return err
  }

  private async writeNow (file: string, line: string): Promise<void> {
    const parsed = parseWrite(file, line)
    if (parsed instanceof EndpointWriteError) throw this.refuse(file, line, parsed)
    const bad = checkCommand(parsed, this.endpoints)
    if (bad !== undefined) throw this.refuse(file, line, bad)
    const next = applyCommand(parsed, this.endpoints)
    const id = commandId(parsed)
    try {
      await this.converge(id, next.get(id))
    } catch (err) {
      await this.rollback(id)
      throw this.refuse(file, line, new EndpointWriteError('EIO', `kernel refused the change: ${(err as Error).message}`, err))
    }
    try {
      await this.persist(next)
    } catch (err) {
      await this.rollback(id)
      throw this.refuse(file, line, new EndpointWriteError('EIO', `cannot save ${this.statePath}: ${(err as Error).message}`, err))
    }
    this.endpoints = next
    this.changed = Date.now()
    this.log('info', `${describeCommand(parsed, this.endpoints.get(id), this.prefix)}`)
  }

  private async rollback (id: number): Promise<void> {
    try {
      await this.converge(id, this.endpoints.get(id))
    } catch (err) {
      this.log('error', `rollback of endpoint ${id} failed: ${(err as Error).message}`)
    }
  }

  private async converge (id: number, desired: EndpointConfig | undefined): Promise<void> {
    let observed = await this.kernel.observe(this.prefix)
    // Redirects the endpoint no longer wants go before its devices change (collapse, destroy).
    const before = this.fastPath ? planFastPath(id, desired, observed, this.prefix).filter(s => s.op === 'unredirect') : []
    await this.applyFastPath(before)
    const names = new Set([endpointBridgeName(this.prefix, id), endpointVxlanName(this.prefix, id)])
    const links = new Map<string, ObservedLink>(observed.filter(l => names.has(l.name)).map(l => [l.name, l]))
    const steps = planEndpoint(id, desired, links, this.prefix, this.mtu)
    for (const s of steps) await this.kernel.apply(s)
    if (!this.fastPath) return
    if (steps.length > 0 || before.length > 0) observed = await this.kernel.observe(this.prefix)
    await this.applyFastPath(planFastPath(id, desired, observed, this.prefix))
    this.noteShape(id, desired, observed)
  }

  /** Makes the kernel agree with the whole configuration; failures are logged, not thrown. */
  async reconcile (): Promise<ReconcileReport> {
    const run = this.queue.then(async () => await this.reconcileNow())
    this.queue = run.catch(() => {})
    return await run
  }

  private async reconcileNow (): Promise<ReconcileReport> {
    const report: ReconcileReport = { applied: [], failed: [] }
    const steps: KernelStep[] = planReconcile(this.list(), await this.kernel.observe(this.prefix), this.prefix, this.mtu)
    for (const s of steps) {
      try {
        await this.kernel.apply(s)
        report.applied.push(describeStep(s))
        this.log('info', `reconcile: ${describeStep(s)}`)
      } catch (err) {
        report.failed.push(`${describeStep(s)}: ${(err as Error).message}`)
        this.log('error', `reconcile: ${describeStep(s)} failed: ${(err as Error).message}`)
      }
    }
    // With the fast path off, filters a previous run installed are removed.
    const observed = await this.kernel.observe(this.prefix)
    await this.applyFastPath(planFastPaths(this.list(), observed, this.prefix, this.fastPath))
    if (this.fastPath) for (const e of this.list()) this.noteShape(e.id, e, observed)
    if (report.failed.length > 0) {
      this.lastErrorText = `EIO reconcile: ${report.failed.join('; ')}`
      this.changed = Date.now()
    }
    return report
  }

  private async persist (endpoints: ReadonlyMap<number, EndpointConfig>): Promise<void> {
    const st: EndpointState = { version: STATE_VERSION, prefix: this.prefix, mtu: this.mtu, endpoints: [...endpoints.values()].sort((a, b) => a.id - b.id) }
    await mkdir(dirname(this.statePath), { recursive: true })
    const tmp = `${this.statePath}.tmp-${process.pid}`
    await writeFile(tmp, JSON.stringify(st, null, 2) + '\n')
    const fh = await openFile(tmp, 'r')
    try { await fh.sync() } finally { await fh.close() }
    await rename(tmp, this.statePath)
  }
}

function commandId (c: EndpointCommand): number {
  return c.kind === 'create' ? c.config.id : c.id
}

function describeCommand (c: EndpointCommand, now: EndpointConfig | undefined, prefix: string): string {
  switch (c.kind) {
    case 'create': return `created ${now !== undefined ? formatEndpoint(now, prefix) : c.config.id}`
    case 'repoint': return `re-pointed endpoint ${c.id} to ${formatAddress(c.remote)}: ${now !== undefined ? formatEndpoint(now, prefix) : ''}`
    case 'destroy': return `destroyed endpoint ${c.id}`
  }
}
