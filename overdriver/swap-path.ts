/**
 * Where a guest's swap pages go. The NBD server calls a SwapPath for every READ and WRITE
 * of an export, so the agent can count paging operations per VM and redirect pages (local
 * disk only, or cooperative swap: see coopswap/).
 */
import { open, type FileHandle } from 'node:fs/promises'
import { PAGE_SIZE } from './constants.ts'

export interface SwapPath {
  /** Size of the swap device in bytes. */
  readonly sizeBytes: number
  /** Bytes [offset, offset + length); the caller has checked the range. */
  read (offset: number, length: number): Promise<Buffer>
  /** Writes data at offset; with `fua`, stable on disk before resolving. */
  write (offset: number, data: Buffer, fua: boolean): Promise<void>
  /** Everything acknowledged so far reaches stable storage. */
  flush (): Promise<void>
  /** The guest no longer needs these bytes (swap discard): contents become unspecified. */
  trim (offset: number, length: number): Promise<void>
  close (): Promise<void>
}

/** Number of 4 KiB pages the byte range [offset, offset + length) touches. */
export function pagesTouched (offset: number, length: number): number {
  if (length <= 0) return 0
  return Math.floor((offset + length - 1) / PAGE_SIZE) - Math.floor(offset / PAGE_SIZE) + 1
}

/** Cumulative counters of one export (what the agent samples every interval). */
export interface PagingCounters {
  readOps: number
  writeOps: number
  /** Pages read (swap-ins). */
  readPages: number
  /** Pages written (swap-outs). */
  writePages: number
  readBytes: number
  writeBytes: number
  flushes: number
  trims: number
  /** Requests answered with an error. */
  errors: number
}

export function zeroCounters (): PagingCounters {
  return { readOps: 0, writeOps: 0, readPages: 0, writePages: 0, readBytes: 0, writeBytes: 0, flushes: 0, trims: 0, errors: 0 }
}

/** A swap disk file on the local disk: the VM's own swap, and the write-through copy under cooperative swap. */
export class FileSwapPath implements SwapPath {
  readonly sizeBytes: number
  readonly path: string
  private readonly fh: FileHandle

  private constructor (path: string, fh: FileHandle, sizeBytes: number) {
    this.path = path
    this.fh = fh
    this.sizeBytes = sizeBytes
  }

  /**
   * Opens (or creates, sparse) the backing file. With `sizeBytes` the file is extended to
   * that size if shorter; without it the file's size is used.
   */
  static async open (path: string, opts: { sizeBytes?: number } = {}): Promise<FileSwapPath> {
    const fh = await open(path, 'a+').then(async h => { await h.close(); return await open(path, 'r+') })
    try {
      let size = (await fh.stat()).size
      if (opts.sizeBytes !== undefined && size < opts.sizeBytes) { await fh.truncate(opts.sizeBytes); size = opts.sizeBytes }
      return new FileSwapPath(path, fh, size)
    } catch (e) {
      await fh.close()
      throw e
    }
  }

  async read (offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length)
    let pos = 0
    while (pos < length) {
      const { bytesRead } = await this.fh.read(buf, pos, length - pos, offset + pos)
      if (bytesRead === 0) { buf.fill(0, pos); break }
      pos += bytesRead
    }
    return buf
  }

  async write (offset: number, data: Buffer, fua: boolean): Promise<void> {
    let pos = 0
    while (pos < data.length) {
      const { bytesWritten } = await this.fh.write(data, pos, data.length - pos, offset + pos)
      pos += bytesWritten
    }
    if (fua) await this.fh.datasync()
  }

  async flush (): Promise<void> {
    await this.fh.datasync()
  }

  async trim (): Promise<void> {
    // Contents of trimmed ranges are unspecified; the local file keeps its bytes.
  }

  async close (): Promise<void> {
    await this.fh.close()
  }
}
