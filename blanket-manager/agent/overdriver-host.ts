/**
 * Overdriver in the host agent, the part the agent runs (docs/overdriver.md, "In the product"):
 *  - one SwapService per VM launched with `swap:`, in the agent process, serving
 *    `<vmDir>/swap.sock` (QEMU attaches it with reconnect-delay, so an agent restart only pauses
 *    the guest's swap I/O; the agent re-serves every VM's swap export when it starts, from
 *    launch.json, and the sector table is persisted next to the disk);
 *  - a page repository (PageRepository, in-process) when the controller asks this host to give
 *    memory to one (`overdriver.repository`), and capabilities for peer VMs (`overdriver.issue`);
 *    it speaks TLS-PSK only, with a credential drawn when it starts and handed out with every
 *    grant; the swap exports reach repositories with the credentials their grants carried
 *    (a keyring by repository address), never in clear;
 *  - the overload loop: every policy interval, each VM's swap counters → pagingRate → decide();
 *    coop-swap-on/off applied with setCooperative(); decide()'s events turned into schema events
 *    (blanket-manager/events/schema.ts overload.*) pushed to every subscribed connection.
 * The NBD server (SwapService) and the page repository load when first needed (dynamic import),
 * so a process that imports this module without serving swap (the CLI, through ./overdriver.ts)
 * never loads them. The controller's side is ./overdriver-control.ts.
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decide, emptyControllerState, forgetMigrations, type ControllerState } from '../../overdriver/decision/decide.ts'
import { pagingRate, type PagingSample } from '../../overdriver/decision/interval.ts'
import { DEFAULT_MIGRATION_TIMEOUT_MS, PAGE_SIZE } from '../../overdriver/constants.ts'
import type { PageRepository } from '../../overdriver/repository/server.ts'
import type { RepositoryConnector, RepositoryTls } from '../../overdriver/repository/transport.ts'
import type { SwapService } from '../../overdriver/swap-service.ts'
import type { SectorTableJson } from '../../overdriver/coopswap/sector-table.ts'
import { SupercloudError } from '../../core/errors.ts'
import type { AdoptTableParams, AdoptTableResult, ConfigureParams, HandoverParams, IssueParams, RepositoryGrantJson, RepositoryInfo, RepositoryParams, VmLaunch } from './protocol.ts'
import { REPOSITORY_PORT, toSchemaEvent, type SchemaEventJson } from './overdriver-control.ts'

/** How stopSwap() leaves the VM's repository pages. */
export type SwapStop = 'keep' | 'destroy'

type Push = (event: SchemaEventJson) => void

interface VmSwap {
  svc: SwapService
  requestedBytes: number
  allocatedBytes: number
  grants: number
  last?: PagingSample
  lastRate?: number
  /**
   * How the guest came to this host: 'incoming' (its QEMU was started for an incoming migration)
   * or 'here' (created here, or already running when the agent started). Undefined until known.
   */
  origin?: 'incoming' | 'here'
  /** Ticks that could not tell the origin yet (no QEMU pidfile). */
  originTries: number
  /** An incoming guest whose arrival was not reported yet (overdriver.migrated on this host, or a new allocation). */
  arriving: boolean
  startedMs: number
  /**
   * Source side of a migration: 'exported' once the table was handed out, 'confirmed' once the
   * destination adopted it (then destroying this copy forgets the table instead of freeing its pages).
   */
  handover?: 'exported' | 'confirmed'
  /** Destination side: a table adopted at the switchover hold, 'committed' once the guest runs here. */
  adopted?: 'pending' | 'committed'
}

/** Ticks without a QEMU pidfile after which a VM counts as created here (e.g. a backend without one). */
const ORIGIN_TRIES = 5

/** Whether the QEMU of the VM whose run directory is `runDir` was started with `-incoming`; undefined when it runs no QEMU (yet). */
export async function startedIncoming (runDir: string): Promise<boolean | undefined> {
  try {
    const pid = Number.parseInt((await readFile(join(runDir, 'qemu.pid'), 'utf8')).trim(), 10)
    if (!Number.isInteger(pid) || pid <= 0) return undefined
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    return argv.includes('-incoming')
  } catch {
    return undefined
  }
}

export class AgentOverdriver {
  private readonly swaps = new Map<string, VmSwap>()
  private readonly subscribers = new Set<Push>()
  private config?: ConfigureParams
  private state: ControllerState = emptyControllerState()
  private timer?: NodeJS.Timeout
  private ticking = false
  private pendingMigrated: string[] = []
  private pendingFailed: string[] = []
  private readonly pendingArrived = new Set<string>()
  private repository?: { repo: PageRepository, host: string, port: number, tls: RepositoryTls }
  /** TLS-PSK credentials of the repositories this host's swap exports use, by address (host:port). */
  private readonly keyring = new Map<string, RepositoryTls>()
  private connector?: RepositoryConnector
  /** The repository's refusals (failed handshakes, caps, malformed requests), newest last (overdriver.stats `repositoryLog`). */
  private readonly repositoryLog: string[] = []

  /** `autoTick: false`: configure() starts no timer; the caller drives tick() (tests, with explicit times). */
  constructor (private readonly vmsDir: string, private readonly opts: { autoTick?: boolean } = {}) {}

  socketPath (vm: string): string { return join(this.vmsDir, vm, 'swap.sock') }

  /** The VM's swap export, if this agent serves one. */
  swapService (vm: string): SwapService | undefined { return this.swaps.get(vm)?.svc }

  /** Serves the VM's swap export (idempotent); returns the unix socket QEMU connects to. */
  async startSwap (l: VmLaunch): Promise<string> {
    if (l.swap === undefined) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `${l.name} has no swap disk`)
    const path = this.socketPath(l.name)
    const have = this.swaps.get(l.name)
    if (have !== undefined) return path
    const repositories = (l.swap.repositories ?? []).map(g => ({ address: g.address, capability: Buffer.from(g.capability, 'hex') }))
    const { SwapService } = await import('../../overdriver/swap-service.ts')
    const { formatAddress, pskConnector } = await import('../../overdriver/repository/transport.ts')
    for (const g of l.swap.repositories ?? []) this.keyring.set(formatAddress(g.address), g.tls)
    this.connector ??= pskConnector(a => this.keyring.get(formatAddress(a)))
    const svc = await SwapService.start({
      vm: l.name, diskPath: join(this.vmsDir, l.name, 'swap.img'), sizeBytes: l.swap.sizeBytes, listen: { path }, repositories, connector: this.connector,
      onEvent: e => {
        if (e.type === 'coopswap.page-corrupt') this.note(l.name, `repository ${e.address} answered page ${e.page} with a wrong checksum: read from the disk, that repository is no longer used`)
        if (e.type === 'coopswap.repository-down') this.note(l.name, `repository ${e.address} is not used (reads from the disk): ${e.reason}`)
      }
    })
    this.swaps.set(l.name, { svc, requestedBytes: l.memory.requestedBytes, allocatedBytes: l.memory.allocatedBytes, grants: repositories.length, originTries: 0, arriving: false, startedMs: Date.now() })
    return path
  }

  /**
   * Stops serving the VM's swap export. 'keep' (agent stopping): the table is persisted, the
   * repository pages stay for the restarted agent. 'destroy' (the VM leaves this host): pages
   * whose table was handed to the migration's destination are forgotten (they are the
   * destination's now), pages adopted from a source whose migration did not finish are forgotten
   * (the source still uses them), every other page is freed at its repository (no leak).
   */
  async stopSwap (vm: string, how: SwapStop = 'keep'): Promise<void> {
    const s = this.swaps.get(vm)
    if (s === undefined) return
    this.swaps.delete(vm)
    delete this.state.vms[vm]
    this.pendingArrived.delete(vm)
    try {
      if (how === 'destroy') {
        if (s.handover === 'confirmed') {
          this.note(vm, `destroyed after handing its sector table over: ${s.svc.releaseTable('all')} repository page(s) left to the destination`)
        } else {
          let released = 0
          if (s.adopted === 'pending') released = s.svc.releaseTable('foreign')
          const freed = await s.svc.reclaim().catch(() => -1)
          this.note(vm, `destroyed${s.handover === 'exported' ? ' (sector table exported but the destination never adopted it)' : ''}: freed ${freed < 0 ? 'no' : freed} repository page(s)${released > 0 ? `, left ${released} page(s) to the migration's source` : ''}`)
        }
      }
    } finally {
      await s.svc.stop()
    }
  }

  private readonly tableLog: string[] = []

  /** Sector-table handover log (overdriver.stats `tableLog`, newest last). */
  private note (vm: string, line: string): void {
    this.tableLog.push(`${new Date().toISOString()} ${vm}: ${line}`)
    if (this.tableLog.length > 50) this.tableLog.shift()
  }

  private swapOf (vm: string): VmSwap {
    const s = this.swaps.get(vm)
    if (s === undefined) throw new SupercloudError('SC_AGENT_BAD_REQUEST', `${vm} has no swap export on this host`)
    return s
  }

  /**
   * Source side, at the switchover hold (guest paused, swap disk mirrored): the VM's sector table
   * with its repository capabilities. The source keeps using it until handover(ok) and the VM's destroy.
   */
  async exportTable (vm: string): Promise<{ table: SectorTableJson }> {
    const s = this.swapOf(vm)
    const table = await s.svc.exportTable()
    s.handover = 'exported'
    this.note(vm, `sector table exported (${table.entries.length} page(s) in ${table.repositories.length} repository capability(ies))`)
    return { table }
  }

  /** Destination side, at the switchover hold: start serving the pages the table names from their repositories. */
  adoptTable (p: AdoptTableParams): AdoptTableResult {
    if (typeof p?.name !== 'string') throw new SupercloudError('SC_AGENT_BAD_REQUEST', 'overdriver.table.adopt: params.name must be a string')
    const s = this.swapOf(p.name)
    let r: AdoptTableResult
    try {
      r = s.svc.adoptTable(p.table)
    } catch (e) {
      this.note(p.name, `sector table refused: ${(e as Error).message}`)
      throw e instanceof SupercloudError ? e : new SupercloudError('SC_AGENT_BAD_REQUEST', (e as Error).message)
    }
    s.adopted = 'pending'
    this.note(p.name, `sector table adopted: ${r.adopted} page(s) served from ${r.repositories} repository capability(ies), ${r.skipped} skipped`)
    return r
  }

  /** Source side: the destination adopted the exported table (ok) or not (then destroy frees the pages). */
  handover (p: HandoverParams): void {
    const s = this.swapOf(p.name)
    s.handover = p.ok ? 'confirmed' : undefined
    this.note(p.name, p.ok ? 'sector table handed over: destroying this copy will not free its pages' : 'sector table handover abandoned')
  }

  /** Source side: the migration failed and the guest keeps running here, with its table. */
  handoverAborted (vm: string): void {
    const s = this.swaps.get(vm)
    if (s?.handover === undefined) return
    s.handover = undefined
    this.note(vm, 'migration failed: the guest keeps its sector table here')
  }

  /** Destination side: the guest runs here, an adopted table is this copy's own. */
  arrivalCommitted (vm: string): void {
    const s = this.swaps.get(vm)
    if (s?.adopted !== 'pending') return
    s.adopted = 'committed'
    this.note(vm, 'guest runs here: the adopted sector table is this copy\'s')
  }

  /**
   * Keeps the allocation decide() sees in step with the balloon. A new allocation (e.g. the
   * balloon deflated after the VM arrived) starts the VM's history afresh, after a grace period.
   */
  setAllocated (vm: string, bytes: number): void {
    const s = this.swaps.get(vm)
    if (s === undefined || s.allocatedBytes === bytes) return
    s.allocatedBytes = bytes
    this.arrived(vm, s)
  }

  private arrived (vm: string, s: VmSwap): void {
    s.arriving = false
    s.origin ??= 'here'
    this.pendingArrived.add(vm)
  }

  /** After an agent restart: serve the swap export of every VM whose launch asks for one. */
  async resume (): Promise<string[]> {
    const names = await readdir(this.vmsDir).catch(() => [] as string[])
    const resumed: string[] = []
    for (const n of names) {
      try {
        const l = JSON.parse(await readFile(join(this.vmsDir, n, 'launch.json'), 'utf8')) as VmLaunch
        if (l.swap === undefined) continue
        await this.startSwap(l)
        // Running before this agent started: whatever move brought it here is over.
        const s = this.swaps.get(n)
        if (s !== undefined) s.origin = 'here'
        resumed.push(n)
      } catch { /* no launch record, or the export cannot start: the VM's swap I/O waits (reconnect-delay) */ }
    }
    return resumed
  }

  subscribe (push: Push): () => void {
    this.subscribers.add(push)
    return () => this.subscribers.delete(push)
  }

  /** Sets the policy and (re)starts the loop at its interval. */
  configure (p: ConfigureParams): { vms: string[] } {
    if (typeof p.host !== 'string' || typeof p.policy?.intervalMs !== 'number' || !(p.policy.intervalMs >= 100)) {
      throw new SupercloudError('SC_AGENT_BAD_REQUEST', 'overdriver.configure: needs host and a policy with intervalMs >= 100')
    }
    if (this.config !== undefined && JSON.stringify(this.config.policy) !== JSON.stringify(p.policy)) {
      // A new policy starts afresh (its thresholds, window and profile): episodes end, cooperative swap off.
      this.state = emptyControllerState()
      for (const s of this.swaps.values()) s.svc.setCooperative(false)
    } else {
      // The controller configuring us knows of no migration under way: one decided before and
      // never reported will not be, so a VM still in a sustained overload is decided again.
      this.state = forgetMigrations(this.state)
    }
    this.config = p
    if (this.timer !== undefined) clearInterval(this.timer)
    if (this.opts.autoTick !== false) {
      this.timer = setInterval(() => { void this.tick() }, p.policy.intervalMs)
      this.timer.unref()
    }
    return { vms: [...this.swaps.keys()].sort() }
  }

  /** One control step (the loop calls it every interval). */
  async tick (now = Date.now()): Promise<void> {
    const cfg = this.config
    if (cfg === undefined || this.ticking) return
    this.ticking = true
    try {
      const rates: Record<string, number> = {}
      const repos: Record<string, boolean> = {}
      for (const [name, s] of this.swaps) {
        if (s.origin === undefined) {
          const incoming = await startedIncoming(join(this.vmsDir, name, 'run'))
          if (incoming !== undefined || ++s.originTries >= ORIGIN_TRIES) {
            s.origin = incoming === true ? 'incoming' : 'here'
            s.arriving = incoming === true && !this.pendingArrived.has(name)
          }
        }
        // An incoming guest nobody reported arrived (a move not made by `serve`): observed after the migration timeout.
        if (s.arriving && now - s.startedMs > (cfg.policy.migrationTimeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS)) this.arrived(name, s)
        const c = s.svc.counters()
        const sample: PagingSample = { atMs: now, readPages: c.readPages, writePages: c.writePages }
        // While the guest moves in, its swap I/O is the move's copy of the disk: not a paging rate.
        if (s.last !== undefined && now > s.last.atMs && s.origin !== undefined && !s.arriving) { rates[name] = pagingRate(s.last, sample); s.lastRate = rates[name] }
        s.last = sample
        repos[name] = s.grants > 0
      }
      const vms = [...this.swaps.entries()].map(([name, s]) => ({ name, host: cfg.host, requestedBytes: s.requestedBytes, allocatedBytes: s.allocatedBytes, ...(s.arriving || s.origin === undefined ? { arriving: true } : {}) }))
      const arrived = [...this.pendingArrived].filter(n => this.swaps.get(n)?.arriving === false && this.swaps.get(n)?.origin !== undefined)
      const d = decide(this.state, { atMs: now, rates, vms, hosts: cfg.hosts ?? [], repositoriesAvailable: repos, migrated: this.pendingMigrated, migrationFailed: this.pendingFailed, arrived }, cfg.policy)
      this.pendingMigrated = []
      this.pendingFailed = []
      for (const n of arrived) this.pendingArrived.delete(n)
      this.state = d.state
      for (const a of d.actions) {
        if (a.kind === 'coop-swap-on' || a.kind === 'coop-swap-off') this.swaps.get(a.vm)?.svc.setCooperative(a.kind === 'coop-swap-on')
      }
      for (const e of d.events) {
        const ev = toSchemaEvent(e, cfg.policy, this.swaps.get(e.vm)?.lastRate)
        if (ev !== undefined) for (const push of this.subscribers) push(ev)
      }
    } finally {
      this.ticking = false
    }
  }

  /**
   * Tells decide(), at the next step, that a migration it decided finished (ok) or failed. On
   * the host the VM moved to (it runs here, and no migration of it was decided here), a
   * finished one reports its arrival: its history starts afresh after a grace period.
   */
  migrationDone (vm: string, ok: boolean): void {
    (ok ? this.pendingMigrated : this.pendingFailed).push(vm)
    const s = this.swaps.get(vm)
    if (ok && s !== undefined && (s.arriving || this.state.vms[vm]?.migrating === undefined)) this.arrived(vm, s)
  }

  async startRepository (p: RepositoryParams): Promise<RepositoryInfo> {
    const capacityPages = Math.floor(p.capacityBytes / PAGE_SIZE)
    if (this.repository !== undefined) {
      return { host: this.repository.host, port: this.repository.port, capacityPages: this.repository.repo.capacityPages }
    }
    if (!(capacityPages > 0)) throw new SupercloudError('SC_AGENT_BAD_REQUEST', 'overdriver.repository: capacityBytes must hold at least one 4K page')
    const { PageRepository } = await import('../../overdriver/repository/server.ts')
    const { formatAddress, newRepositoryTls, pskListener } = await import('../../overdriver/repository/transport.ts')
    // Drawn here, kept in this process only: the controller hands it on with each grant (overdriver.issue).
    const tls = newRepositoryTls()
    const repo = new PageRepository({
      capacityPages,
      listener: pskListener(tls),
      onEvent: e => {
        if (e.type !== 'repository.rejected') return
        this.repositoryLog.push(`${new Date().toISOString()} refused ${e.remote}: ${e.reason}`)
        if (this.repositoryLog.length > 50) this.repositoryLog.shift()
      }
    })
    const port = await repo.listen(p.port ?? REPOSITORY_PORT, p.host)
    this.repository = { repo, host: p.host, port, tls }
    this.keyring.set(formatAddress({ host: p.host, port }), tls)
    return { host: p.host, port, capacityPages }
  }

  issue (p: IssueParams): RepositoryGrantJson {
    const r = this.repository
    if (r === undefined) throw new SupercloudError('SC_REPOSITORY', 'this host runs no page repository (overdriver.repository first)')
    if (typeof p.vm !== 'string') throw new SupercloudError('SC_AGENT_BAD_REQUEST', 'overdriver.issue: params.vm must be a string')
    return { address: { host: r.host, port: r.port }, capability: r.repo.issue(p.vm, p.maxPages).toString('hex'), tls: { ...r.tls } }
  }

  stats (): Record<string, unknown> {
    const vms: Record<string, unknown> = {}
    for (const [n, s] of this.swaps) vms[n] = { ...s.svc.stats(), coopSwap: this.state.vms[n]?.coopSwap ?? false }
    return { vms, tableLog: [...this.tableLog], repositoryLog: [...this.repositoryLog], ...(this.repository !== undefined ? { repository: this.repository.repo.stats() } : {}) }
  }

  async stop (): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.subscribers.clear()
    for (const vm of [...this.swaps.keys()]) await this.stopSwap(vm).catch(() => {})
    await this.repository?.repo.close()
    this.repository = undefined
  }
}
