/**
 * The cooperative swap client's table (seed 002 §6.2.4): for each swap page held by a page
 * repository, which repository (address and capability), the page id there, and where the
 * page is on the local disk. It moves with the VM on migration (toJSON / fromJSON) and is
 * persisted as a snapshot plus an append-only journal so a restarted agent resumes with it.
 *
 * Keys are page indexes of the swap device (page = 8 sectors of 512 bytes); the serialized
 * form names entries by their first sector, as the seed's table does.
 *
 * Each entry carries the page's checksum (the first 8 bytes of its SHA-256, taken when the page
 * was sent): the repository does not store it, the reader checks every page it gets back
 * against it (a repository cannot hand back another page, nor a tampered one, undetected). In
 * the serialized form (version 2) the checksums are one base64 string, 8 bytes per entry in the
 * entries' order (~11 bytes an entry). A version 1 table (no checksums) is read as empty: its
 * pages are all on the local disk (write-through), which is where they are then read from.
 */
import { createHash } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, renameSync, writeFileSync, writeSync, fsyncSync, ftruncateSync } from 'node:fs'
import { PAGE_SIZE } from '../constants.ts'
import { SectorTableError } from '../errors.ts'

export const SECTOR_SIZE = 512
export const SECTORS_PER_PAGE = PAGE_SIZE / SECTOR_SIZE

export interface RepositoryRef {
  /** host:port of the page repository. */
  address: string
  /** The VM's capability there, 32 hex digits. */
  capability: string
}

export interface SectorEntry {
  /** Index into the table's repositories. */
  repository: number
  /** Page id at the repository. */
  pageId: number
  /** Byte offset of the same page in the local swap disk (write-through copy). */
  diskOffset: number
  /** The page's checksum (pageSum) as it was sent to the repository. */
  sum: bigint
}

/** Serialized form: what moves with the VM. */
export interface SectorTableJson {
  /** 2 (1: tables of older agents, without checksums: read as empty). */
  version: 1 | 2
  pageSize: number
  repositories: RepositoryRef[]
  /** [first sector, repository index, page id, disk offset] */
  entries: Array<[number, number, number, number]>
  /** Version 2: the entries' checksums, 8 bytes each in the entries' order, base64. */
  sums?: string
}

/** Bytes of a page checksum. */
export const SUM_SIZE = 8

/** A page's checksum: the first 8 bytes of its SHA-256, as a bigint. */
export function pageSum (page: Buffer): bigint {
  return createHash('sha256').update(page).digest().readBigUInt64BE(0)
}

/** Journal records: a set without checksum (older agents: dropped on replay), a delete, a set with checksum. */
const REC_SET_V1 = 1
const REC_DEL = 2
const REC_SET = 3
const REC_SIZE = 1 + 8 + 2 + 8 + 8
const REC_SET_SIZE = REC_SIZE + SUM_SIZE

export class SectorTable {
  readonly repositories: RepositoryRef[] = []
  private readonly entries = new Map<number, SectorEntry>()
  private journalFd: number | undefined
  private journalRecords = 0
  private path: string | undefined

  get size (): number { return this.entries.size }

  /** Index of a repository, added if new. */
  repositoryIndex (ref: RepositoryRef): number {
    const i = this.repositories.findIndex(r => r.address === ref.address && r.capability === ref.capability)
    if (i >= 0) return i
    if (this.repositories.length >= 65535) throw new SectorTableError('more than 65535 repositories')
    this.repositories.push({ ...ref })
    if (this.journalFd !== undefined) this.compact()
    return this.repositories.length - 1
  }

  get (page: number): SectorEntry | undefined { return this.entries.get(page) }
  has (page: number): boolean { return this.entries.has(page) }
  pages (): IterableIterator<number> { return this.entries.keys() }
  entriesOf (): IterableIterator<[number, SectorEntry]> { return this.entries.entries() }

  set (page: number, e: SectorEntry): void {
    this.entries.set(page, e)
    this.append(REC_SET, page, e)
  }

  /** Removes the entry; the removal is journaled before this returns (see CoopSwapPath.write). */
  delete (page: number): boolean {
    if (!this.entries.delete(page)) return false
    this.append(REC_DEL, page)
    return true
  }

  clear (): void {
    for (const p of [...this.entries.keys()]) this.delete(p)
  }

  toJSON (): SectorTableJson {
    const sorted = [...this.entries].sort((a, b) => a[0] - b[0])
    const sums = Buffer.alloc(sorted.length * SUM_SIZE)
    sorted.forEach(([, e], i) => { sums.writeBigUInt64BE(e.sum, i * SUM_SIZE) })
    return {
      version: 2,
      pageSize: PAGE_SIZE,
      repositories: this.repositories.map(r => ({ ...r })),
      entries: sorted.map(([page, e]) => [page * SECTORS_PER_PAGE, e.repository, e.pageId, e.diskOffset]),
      sums: sums.toString('base64')
    }
  }

  static fromJSON (j: unknown): SectorTable {
    const bad = (why: string): SectorTableError => new SectorTableError(`sector table: ${why}`)
    if (typeof j !== 'object' || j === null) throw bad('not an object')
    const o = j as Partial<SectorTableJson>
    if (o.version !== 1 && o.version !== 2) throw bad(`unsupported version ${String(o.version)}`)
    if (o.pageSize !== PAGE_SIZE) throw bad(`page size ${String(o.pageSize)} is not ${PAGE_SIZE}`)
    if (!Array.isArray(o.repositories) || !Array.isArray(o.entries)) throw bad('repositories and entries must be lists')
    const t = new SectorTable()
    for (const r of o.repositories) {
      if (typeof r?.address !== 'string' || typeof r?.capability !== 'string' || !/^[0-9a-f]{32}$/.test(r.capability)) throw bad('bad repository reference')
      t.repositories.push({ address: r.address, capability: r.capability })
    }
    const sums = o.version === 2 ? decodeSums(o.sums, o.entries.length) : undefined
    if (typeof sums === 'string') throw bad(sums)
    o.entries.forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 4 || !e.every(x => Number.isSafeInteger(x) && x >= 0)) throw bad(`bad entry ${JSON.stringify(e)}`)
      const [sector, repo, pageId, diskOffset] = e as [number, number, number, number]
      if (sector % SECTORS_PER_PAGE !== 0) throw bad(`sector ${sector} is not the start of a page`)
      if (repo >= t.repositories.length) throw bad(`entry for sector ${sector} names repository ${repo} of ${t.repositories.length}`)
      // Version 1 entries have no checksum to check a page against: the disk serves them.
      if (sums !== undefined) t.entries.set(sector / SECTORS_PER_PAGE, { repository: repo, pageId, diskOffset, sum: sums.readBigUInt64BE(i * SUM_SIZE) })
    })
    return t
  }

  /**
   * Opens a persisted table at `path` (snapshot `path`, journal `path.journal`): loads the
   * snapshot, replays the journal (ignoring a torn last record), writes a fresh snapshot and
   * keeps journaling every change. A missing file gives an empty table.
   */
  static openPersistent (path: string): SectorTable {
    let t = new SectorTable()
    if (existsSync(path)) {
      let j: unknown
      try { j = JSON.parse(readFileSync(path, 'utf8')) } catch (e) { throw new SectorTableError(`sector table ${path} is not valid JSON`, e) }
      t = SectorTable.fromJSON(j)
    }
    const jp = `${path}.journal`
    if (existsSync(jp)) {
      const b = readFileSync(jp)
      for (let off = 0; off + REC_SIZE <= b.length;) {
        const kind = b.readUInt8(off)
        const page = Number(b.readBigUInt64BE(off + 1))
        if (kind === REC_SET) {
          if (off + REC_SET_SIZE > b.length) break
          const repository = b.readUInt16BE(off + 9)
          if (repository >= t.repositories.length) break
          t.entries.set(page, { repository, pageId: Number(b.readBigUInt64BE(off + 11)), diskOffset: Number(b.readBigUInt64BE(off + 19)), sum: b.readBigUInt64BE(off + REC_SIZE) })
          off += REC_SET_SIZE
          continue
        }
        // A set without checksum (older agent) is as good as a delete: the disk has the page.
        if (kind === REC_DEL || kind === REC_SET_V1) t.entries.delete(page)
        else break
        off += REC_SIZE
      }
    }
    t.path = path
    t.compact()
    return t
  }

  /** Writes a snapshot and starts an empty journal. */
  compact (): void {
    const path = this.path
    if (path === undefined) return
    const tmp = `${path}.tmp`
    writeFileSync(tmp, JSON.stringify(this.toJSON()))
    renameSync(tmp, path)
    if (this.journalFd === undefined) this.journalFd = openSync(`${path}.journal`, 'a')
    ftruncateSync(this.journalFd, 0)
    this.journalRecords = 0
  }

  /** fsyncs the journal (FLUSH from the guest). */
  sync (): void {
    if (this.journalFd !== undefined) fsyncSync(this.journalFd)
  }

  close (): void {
    if (this.journalFd === undefined) return
    this.compact()
    closeSync(this.journalFd)
    this.journalFd = undefined
    this.path = undefined
  }

  private readonly rec = Buffer.alloc(REC_SET_SIZE)

  private append (kind: number, page: number, e?: SectorEntry): void {
    if (this.journalFd === undefined) return
    const r = this.rec
    r.fill(0)
    r.writeUInt8(kind, 0)
    r.writeBigUInt64BE(BigInt(page), 1)
    if (e !== undefined) {
      r.writeUInt16BE(e.repository, 9)
      r.writeBigUInt64BE(BigInt(e.pageId), 11)
      r.writeBigUInt64BE(BigInt(e.diskOffset), 19)
      r.writeBigUInt64BE(e.sum, REC_SIZE)
    }
    // Synchronous, so records land in order and before the caller goes on (a few µs to the page cache).
    writeSync(this.journalFd, r, 0, kind === REC_SET ? REC_SET_SIZE : REC_SIZE)
    if (++this.journalRecords >= 1_000_000) this.compact()
  }
}

/** The checksums of `n` entries from their base64 form, or why they do not fit. */
function decodeSums (text: unknown, n: number): Buffer | string {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return 'sums must be a base64 string'
  const b = Buffer.from(text, 'base64')
  return b.length === n * SUM_SIZE ? b : `sums hold ${b.length} bytes for ${n} entries (${SUM_SIZE} each)`
}
