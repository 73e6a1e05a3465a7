/**
 * Cooperative swap (seed 002 §6.1-6.2): a SwapPath whose pages also go to page repositories
 * on peer hosts. The repositories are a write-through cache over the VM's local swap disk:
 *  - a write goes to the local disk (the guest's reply waits for that) and then,
 *    asynchronously, to a repository; the sector table records the page once the repository
 *    acknowledged it and no newer write to that page happened meanwhile;
 *  - a read is served from the repository when the table has the page, else from disk; when a
 *    repository fails or no longer has the page, the read falls back to disk. Losing a
 *    repository therefore loses nothing.
 * Cooperative swap can be switched off (new writes go to disk only; pages already in
 * repositories keep being served from there until overwritten or reclaimed).
 */
import { channel } from 'node:diagnostics_channel'
import { PAGE_SIZE } from '../constants.ts'
import { RepositoryError } from '../errors.ts'
import { formatAddress, parseAddress, RepositoryClient, type RepositoryAddress } from '../repository/client.ts'
import type { RepositoryConnector } from '../repository/transport.ts'
import type { SwapPath } from '../swap-path.ts'
import { pageSum, SectorTable, type RepositoryRef, type SectorEntry, type SectorTableJson } from './sector-table.ts'

export const COOPSWAP_CHANNEL = 'supercloud:overdriver:coopswap'
const diag = channel(COOPSWAP_CHANNEL)

export type CoopSwapEvent =
  | { type: 'coopswap.repository-down', address: string, reason: string }
  | { type: 'coopswap.repository-full', address: string }
  | { type: 'coopswap.read-fallback', page: number, reason: string }
  /** A repository answered a page that does not match its checksum in the sector table (tampered or corrupted): read from disk, the repository is no longer used. */
  | { type: 'coopswap.page-corrupt', address: string, page: number }
  | { type: 'coopswap.table-adopted', pages: number, skipped: number, repositories: number }
  | { type: 'coopswap.table-released', pages: number }

export interface RepositoryGrant {
  address: RepositoryAddress
  /** This VM's 16-byte capability at that repository. */
  capability: Buffer
}

export interface CoopSwapOptions {
  /** The VM's local swap disk (owned by this path from now on: close() closes it). */
  disk: SwapPath
  /** Repositories this VM may use, in order of preference. */
  repositories: RepositoryGrant[]
  /** Persist the sector table here (snapshot + journal) so a restarted agent resumes with it. */
  tablePath?: string
  /** A table that moved with the VM (migration); ignored when tablePath already holds one. */
  table?: SectorTableJson
  /** Start with cooperative swap on (default false: disk only until the controller says so). */
  enabled?: boolean
  /** Repository PUTs in flight before further writes skip the repository (default 4096 pages). */
  maxPutsInFlight?: number
  /** How repositories are reached (default clear TCP; host agents pass pskConnector: TLS-PSK only). */
  connector?: RepositoryConnector
  onEvent?: (e: CoopSwapEvent) => void
}

export interface CoopSwapStats {
  enabled: boolean
  pagesInRepositories: number
  putsInFlight: number
  repositoryReads: number
  diskReads: number
  repositoryWrites: number
  skippedWrites: number
  fallbacks: number
  /** Pages that moved with the VM, freed at their repository once read here (reclaim on read). */
  reclaimedOnRead: number
  /** `granted`: false for a capability that came with the VM (read-only here: reclaimed as read). */
  repositories: Array<{ address: string, alive: boolean, full: boolean, pages: number, granted: boolean }>
}

interface Repo {
  ref: RepositoryRef
  index: number
  address: RepositoryAddress
  capability: Buffer
  client: RepositoryClient | undefined
  connecting: Promise<RepositoryClient | undefined> | undefined
  down: boolean
  full: boolean
  pages: number
}

export class CoopSwapPath implements SwapPath {
  readonly sizeBytes: number
  private readonly disk: SwapPath
  readonly table: SectorTable
  private readonly repos: Repo[] = []
  private enabledFlag: boolean
  private readonly gen = new Map<number, number>()
  private readonly puts = new Set<Promise<void>>()
  /** Page → puts of it in flight (a stale one frees its repository copy only when no newer one may have reused it). */
  private readonly putsOf = new Map<number, number>()
  private readonly maxPuts: number
  private readonly opts: CoopSwapOptions
  private next = 0
  /** This VM's grants on this host (the launch's, plus addRepository()). */
  private readonly grants: RepositoryGrant[]
  private readonly s = { repositoryReads: 0, diskReads: 0, repositoryWrites: 0, skippedWrites: 0, fallbacks: 0, reclaimedOnRead: 0 }

  private constructor (opts: CoopSwapOptions, table: SectorTable) {
    this.opts = opts
    this.disk = opts.disk
    this.sizeBytes = opts.disk.sizeBytes
    this.table = table
    this.enabledFlag = opts.enabled ?? false
    this.maxPuts = opts.maxPutsInFlight ?? 4096
    this.grants = [...opts.repositories]
    for (const g of opts.repositories) this.addRepo({ address: formatAddress(g.address), capability: g.capability.toString('hex') })
    // Repositories named by the table (pages written before a restart or migration) stay readable.
    for (const ref of [...table.repositories]) this.addRepo(ref)
    for (const [, e] of table.entriesOf()) { const r = this.repos.find(x => x.index === e.repository); if (r !== undefined) r.pages++ }
  }

  static open (opts: CoopSwapOptions): CoopSwapPath {
    let table: SectorTable
    if (opts.tablePath !== undefined) {
      table = SectorTable.openPersistent(opts.tablePath)
      if (table.size === 0 && opts.table !== undefined) mergeTable(table, SectorTable.fromJSON(opts.table), () => true)
    } else table = opts.table !== undefined ? SectorTable.fromJSON(opts.table) : new SectorTable()
    return new CoopSwapPath(opts, table)
  }

  /** Whether `ref` is one of the grants of this VM on this host (else it came with the VM: read-only here). */
  private granted (ref: RepositoryRef): boolean {
    return this.grants.some(g => formatAddress(g.address) === ref.address && g.capability.toString('hex') === ref.capability)
  }

  /**
   * Takes over the sector table of a VM that migrated here (at the switchover hold: the guest is
   * paused on both sides and the swap disk was mirrored, so every entry matches this disk).
   * Entries for pages this path already has an entry for, or a write in flight to the
   * repositories, are skipped (their disk copy is current). The pages stay under the source's
   * capabilities: they are served from there and freed as the guest reads or trims them.
   */
  adoptTable (j: SectorTableJson): { adopted: number, skipped: number, repositories: number } {
    const moved = SectorTable.fromJSON(j)
    let skipped = 0
    const before = this.table.size
    mergeTable(this.table, moved, page => {
      if (this.table.has(page) || this.putsOf.has(page)) { skipped++; return false }
      return true
    })
    for (const ref of moved.repositories) this.addRepo(ref)
    for (const r of this.repos) r.pages = 0
    for (const [, e] of this.table.entriesOf()) { const r = this.repoFor(e.repository); if (r !== undefined) r.pages++ }
    const out = { adopted: this.table.size - before, skipped, repositories: moved.repositories.length }
    this.emit({ type: 'coopswap.table-adopted', pages: out.adopted, skipped, repositories: out.repositories })
    return out
  }

  /**
   * Forgets entries without freeing their repository pages (they now belong to another copy of
   * the VM: the destination it migrated to, or the source when this copy was a failed
   * migration's destination). `which` 'all' or 'foreign' (only those under capabilities that
   * came with the VM). Returns how many entries were dropped.
   */
  releaseTable (which: 'all' | 'foreign' = 'all'): number {
    let n = 0
    for (const [page, e] of [...this.table.entriesOf()]) {
      const r = this.repoFor(e.repository)
      if (which === 'foreign' && r !== undefined && this.granted(r.ref)) continue
      this.gen.set(page, (this.gen.get(page) ?? 0) + 1)
      this.table.delete(page)
      if (r !== undefined) r.pages--
      n++
    }
    this.emit({ type: 'coopswap.table-released', pages: n })
    return n
  }

  private addRepo (ref: RepositoryRef): void {
    if (this.repos.some(r => r.ref.address === ref.address && r.ref.capability === ref.capability)) return
    const index = this.table.repositoryIndex(ref)
    this.repos.push({ ref, index, address: parseAddress(ref.address), capability: Buffer.from(ref.capability, 'hex'), client: undefined, connecting: undefined, down: false, full: false, pages: 0 })
  }

  get enabled (): boolean { return this.enabledFlag }
  enable (): void { this.enabledFlag = true }
  disable (): void { this.enabledFlag = false }

  /** Adds a repository grant (the controller found more room); down repositories are retried. */
  addRepository (g: RepositoryGrant): void {
    this.grants.push(g)
    this.addRepo({ address: formatAddress(g.address), capability: g.capability.toString('hex') })
    for (const r of this.repos) if (r.down) { r.down = false }
  }

  private emit (e: CoopSwapEvent): void {
    if (diag.hasSubscribers) diag.publish(e)
    try { this.opts.onEvent?.(e) } catch { /* listener bug */ }
  }

  private markDown (r: Repo, reason: string): void {
    if (r.down) return
    r.down = true
    r.client?.close()
    r.client = undefined
    this.emit({ type: 'coopswap.repository-down', address: r.ref.address, reason })
  }

  private async client (r: Repo): Promise<RepositoryClient | undefined> {
    if (r.down) return undefined
    if (r.client !== undefined && r.client.alive) return r.client
    if (r.client !== undefined) { this.markDown(r, r.client.failureReason ?? 'connection lost'); return undefined }
    r.connecting ??= RepositoryClient.connect(r.address, { timeoutMs: 2000, ...(this.opts.connector !== undefined ? { connector: this.opts.connector } : {}) }).then(c => { r.client = c; return c }, (e: Error) => { this.markDown(r, e.message); return undefined }).finally(() => { r.connecting = undefined })
    return await r.connecting
  }

  private repoFor (index: number): Repo | undefined {
    return this.repos.find(r => r.index === index)
  }

  async read (offset: number, length: number): Promise<Buffer> {
    const first = Math.floor(offset / PAGE_SIZE)
    const last = Math.floor((offset + length - 1) / PAGE_SIZE)
    let any = false
    for (let p = first; p <= last && !any; p++) any = this.table.has(p)
    if (!any) { this.s.diskReads++; return await this.disk.read(offset, length) }
    // Zero-filled: whatever goes wrong below, no leftover memory of this process reaches the guest.
    const out = Buffer.alloc(length)
    const jobs: Array<Promise<void>> = []
    let runStart = -1
    const flushRun = (endPage: number): void => {
      if (runStart < 0) return
      const a = Math.max(offset, runStart * PAGE_SIZE)
      const b = Math.min(offset + length, endPage * PAGE_SIZE)
      runStart = -1
      this.s.diskReads++
      jobs.push(this.disk.read(a, b - a).then(d => { d.copy(out, a - offset) }))
    }
    for (let p = first; p <= last; p++) {
      const e = this.table.get(p)
      if (e === undefined) { if (runStart < 0) runStart = p; continue }
      flushRun(p)
      jobs.push(this.readPage(p, e).then(async page => {
        const a = Math.max(offset, p * PAGE_SIZE)
        const b = Math.min(offset + length, (p + 1) * PAGE_SIZE)
        if (page !== undefined) { page.copy(out, a - offset, a - p * PAGE_SIZE, b - p * PAGE_SIZE); return }
        this.s.diskReads++
        const d = await this.disk.read(a, b - a)
        d.copy(out, a - offset)
      }))
    }
    flushRun(last + 1)
    await Promise.all(jobs)
    return out
  }

  /** One page from its repository, or undefined (then the caller reads the disk). */
  private async readPage (page: number, { repository: repoIndex, pageId, sum }: SectorEntry): Promise<Buffer | undefined> {
    const r = this.repoFor(repoIndex)
    const g = this.gen.get(page) ?? 0
    const fallback = (reason: string): undefined => {
      this.s.fallbacks++
      this.emit({ type: 'coopswap.read-fallback', page, reason })
      if ((this.gen.get(page) ?? 0) === g && this.table.get(page)?.repository === repoIndex) { this.table.delete(page); if (r !== undefined) r.pages-- }
      return undefined
    }
    if (r === undefined) return fallback('repository unknown')
    const c = await this.client(r)
    if (c === undefined) return fallback(`repository ${r.ref.address} is down`)
    try {
      const data = await c.get(r.capability, pageId)
      if (data === undefined) return fallback(`repository ${r.ref.address} no longer holds the page`)
      // Only a whole page counts: a short (or long) answer is no page at all, and the disk has it.
      if (data.length !== PAGE_SIZE) return fallback(`repository ${r.ref.address} answered ${data.length} bytes, not a ${PAGE_SIZE}-byte page`)
      // Only the page that was sent: its checksum is in the table, not at the repository.
      if (pageSum(data) !== sum) {
        this.emit({ type: 'coopswap.page-corrupt', address: r.ref.address, page })
        const reason = `repository ${r.ref.address} answered page ${page} with a wrong checksum (tampered or corrupted)`
        this.markDown(r, reason)
        return fallback(reason)
      }
      this.s.repositoryReads++
      if (!this.granted(r.ref) && (this.gen.get(page) ?? 0) === g && this.table.get(page)?.repository === repoIndex) {
        // A page that moved with the VM: the disk holds the same data, so the repository gets its memory back now.
        this.table.delete(page)
        r.pages--
        this.s.reclaimedOnRead++
        void c.del(r.capability, pageId).catch(() => {})
      }
      return data
    } catch (e) {
      if (e instanceof RepositoryError && e.status === 'connection') this.markDown(r, e.message)
      return fallback((e as Error).message)
    }
  }

  async write (offset: number, data: Buffer, fua: boolean): Promise<void> {
    const first = Math.floor(offset / PAGE_SIZE)
    const last = Math.floor((offset + data.length - 1) / PAGE_SIZE)
    // Invalidate first (journaled synchronously), so no crash can leave an entry pointing at older data.
    for (let p = first; p <= last; p++) {
      this.gen.set(p, (this.gen.get(p) ?? 0) + 1)
      const e = this.table.get(p)
      if (e !== undefined) { this.table.delete(p); const r = this.repoFor(e.repository); if (r !== undefined) r.pages-- }
    }
    await this.disk.write(offset, data, fua)
    if (!this.enabledFlag) return
    for (let p = first; p <= last; p++) {
      if (p * PAGE_SIZE < offset || (p + 1) * PAGE_SIZE > offset + data.length) continue // partial page: disk only
      if (this.puts.size >= this.maxPuts) { this.s.skippedWrites++; continue }
      const page = data.subarray(p * PAGE_SIZE - offset, (p + 1) * PAGE_SIZE - offset)
      this.putsOf.set(p, (this.putsOf.get(p) ?? 0) + 1)
      const put = this.putPage(p, page, this.gen.get(p) ?? 0).finally(() => {
        this.puts.delete(put)
        const n = (this.putsOf.get(p) ?? 1) - 1
        if (n > 0) this.putsOf.set(p, n); else this.putsOf.delete(p)
      })
      this.puts.add(put)
    }
  }

  private pickRepo (): Repo | undefined {
    for (let i = 0; i < this.repos.length; i++) {
      const r = this.repos[(this.next + i) % this.repos.length]
      // Only this host's grants take new pages; capabilities that came with the VM are read-only here.
      if (r !== undefined && !r.down && !r.full && this.granted(r.ref)) {
        this.next = (this.next + i + 1) % this.repos.length
        return r
      }
    }
    return undefined
  }

  private async putPage (page: number, data: Buffer, g: number): Promise<void> {
    let sum: bigint | undefined
    for (let attempt = 0; attempt < this.repos.length; attempt++) {
      const r = this.pickRepo()
      if (r === undefined) { this.s.skippedWrites++; return }
      const c = await this.client(r)
      if (c === undefined) continue
      try {
        sum ??= pageSum(data)
        await c.put(r.capability, page, data)
      } catch (e) {
        if (e instanceof RepositoryError && e.status === 'no-room') {
          if (!r.full) { r.full = true; this.emit({ type: 'coopswap.repository-full', address: r.ref.address }) }
          continue
        }
        if (e instanceof RepositoryError && e.status === 'connection') this.markDown(r, e.message)
        continue
      }
      this.s.repositoryWrites++
      if ((this.gen.get(page) ?? 0) !== g) {
        // Overwritten or trimmed meanwhile: the newer write decides. The copy just stored is
        // nobody's: free it unless the table (or a newer put, same page id) uses that slot.
        if (this.table.get(page)?.repository !== r.index && (this.putsOf.get(page) ?? 0) <= 1) void c.del(r.capability, page).catch(() => {})
        return
      }
      const old = this.table.get(page)
      if (old !== undefined) { const o = this.repoFor(old.repository); if (o !== undefined) o.pages-- }
      this.table.set(page, { repository: r.index, pageId: page, diskOffset: page * PAGE_SIZE, sum: sum ?? pageSum(data) })
      r.pages++
      return
    }
    this.s.skippedWrites++
  }

  async flush (): Promise<void> {
    await this.disk.flush()
    this.table.sync()
  }

  async trim (offset: number, length: number): Promise<void> {
    const first = Math.ceil(offset / PAGE_SIZE)
    const end = Math.floor((offset + length) / PAGE_SIZE)
    for (let p = first; p < end; p++) {
      // Invalidate even without an entry: a put of this page still in flight must not record it.
      this.gen.set(p, (this.gen.get(p) ?? 0) + 1)
      const e = this.table.get(p)
      if (e === undefined) continue
      this.table.delete(p)
      const r = this.repoFor(e.repository)
      if (r === undefined) continue
      r.pages--
      r.full = false
      void this.client(r).then(c => c?.del(r.capability, e.pageId)).catch(() => {})
    }
    await this.disk.trim(offset, length)
  }

  /**
   * Gives the repositories their memory back: every page is already on the local disk, so this
   * only forgets the entries and deletes the pages (after an overload ended, or before revoking).
   */
  async reclaim (): Promise<number> {
    await this.settle()
    const entries = [...this.table.entriesOf()]
    this.table.clear()
    for (const r of this.repos) { r.pages = 0; r.full = false }
    await Promise.allSettled(entries.map(async ([, e]) => {
      const r = this.repoFor(e.repository)
      const c = r !== undefined ? await this.client(r) : undefined
      if (r !== undefined && c !== undefined) await c.del(r.capability, e.pageId)
    }))
    return entries.length
  }

  /** Waits for the asynchronous repository writes in flight. */
  async settle (): Promise<void> {
    while (this.puts.size > 0) await Promise.allSettled([...this.puts])
  }

  /** The table as it moves with the VM (call after the guest stopped, at stop-and-copy). */
  async exportTable (): Promise<SectorTableJson> {
    await this.settle()
    return this.table.toJSON()
  }

  stats (): CoopSwapStats {
    return {
      enabled: this.enabledFlag,
      pagesInRepositories: this.table.size,
      putsInFlight: this.puts.size,
      ...this.s,
      repositories: this.repos.map(r => ({ address: r.ref.address, alive: !r.down, full: r.full, pages: r.pages, granted: this.granted(r.ref) }))
    }
  }

  async close (): Promise<void> {
    await this.settle()
    for (const r of this.repos) r.client?.close()
    this.table.close()
    await this.disk.close()
  }
}

/** Copies `from`'s entries into `into` (repository indexes remapped), those `take` accepts. */
function mergeTable (into: SectorTable, from: SectorTable, take: (page: number) => boolean): void {
  for (const [page, e] of from.entriesOf()) {
    const ref = from.repositories[e.repository]
    if (ref === undefined || !take(page)) continue
    into.set(page, { ...e, repository: into.repositoryIndex(ref) })
  }
}
