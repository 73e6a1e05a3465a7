/**
 * A small NBD client (fixed newstyle, NBD_OPT_GO, simple replies) for tests, benchmarks and
 * tools: pipelined requests over one connection, matched to replies by handle.
 */
import { connect, type Socket } from 'node:net'
import { NbdProtocolError, NbdRequestError } from '../errors.ts'
import { StreamReader } from '../stream-reader.ts'
import * as P from './protocol.ts'

export class NbdClient {
  readonly sizeBytes: number
  readonly flags: number
  private readonly socket: Socket
  private readonly reader: StreamReader
  private nextHandle = 1n
  private readonly waiting = new Map<bigint, { length: number, resolve: (b: Buffer) => void, reject: (e: Error) => void, what: string }>()
  private failed: Error | undefined

  private constructor (socket: Socket, reader: StreamReader, sizeBytes: number, flags: number) {
    this.socket = socket
    this.reader = reader
    this.sizeBytes = sizeBytes
    this.flags = flags
    void this.readReplies()
  }

  /** Connects and opens `exportName` with NBD_OPT_GO. */
  static async connect (where: { port: number, host?: string } | { path: string }, exportName: string): Promise<NbdClient> {
    const socket = 'path' in where ? connect(where.path) : connect(where.port, where.host ?? '127.0.0.1')
    socket.setNoDelay(true)
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const reader = new StreamReader(socket)
    try {
      const g = await reader.read(18)
      if (g.readBigUInt64BE(0) !== P.NBDMAGIC || g.readBigUInt64BE(8) !== P.IHAVEOPT) throw new NbdProtocolError('not an NBD newstyle server')
      const cf = Buffer.alloc(4)
      cf.writeUInt32BE(P.CLIENT_FLAG_FIXED_NEWSTYLE | P.CLIENT_FLAG_NO_ZEROES)
      socket.write(cf)
      socket.write(P.encodeOption(P.OPT_GO, P.encodeGo(exportName, [P.INFO_BLOCK_SIZE])))
      let size = -1
      let flags = 0
      for (;;) {
        const h = await reader.read(20)
        const type = h.readUInt32BE(12)
        const data = await reader.read(h.readUInt32BE(16))
        if (type === P.REP_ACK) break
        if (type === P.REP_INFO && data.readUInt16BE(0) === P.INFO_EXPORT) { size = Number(data.readBigUInt64BE(2)); flags = data.readUInt16BE(10) }
        if ((type & 0x80000000) !== 0) throw new NbdProtocolError(`server refused export '${exportName}': ${data.toString('utf8') || `error 0x${type.toString(16)}`}`)
      }
      if (size < 0) throw new NbdProtocolError('server sent no export information')
      return new NbdClient(socket, reader, size, flags)
    } catch (e) {
      socket.destroy()
      throw e
    }
  }

  private async readReplies (): Promise<void> {
    try {
      for (;;) {
        const h = await this.reader.read(16)
        if (h.readUInt32BE(0) !== P.SIMPLE_REPLY_MAGIC) throw new NbdProtocolError(`bad reply magic 0x${h.readUInt32BE(0).toString(16)}`)
        const handle = h.readBigUInt64BE(8)
        const w = this.waiting.get(handle)
        if (w === undefined) throw new NbdProtocolError(`reply for unknown handle ${handle}`)
        this.waiting.delete(handle)
        const err = h.readUInt32BE(4)
        if (err !== 0) { w.reject(new NbdRequestError(w.what, err)); continue }
        const data = w.length > 0 ? await this.reader.read(w.length) : Buffer.alloc(0)
        w.resolve(data)
      }
    } catch (e) {
      this.failed = e as Error
      for (const w of this.waiting.values()) w.reject(e as Error)
      this.waiting.clear()
      this.socket.destroy()
    }
  }

  private request (type: number, offset: number, length: number, payload?: Buffer, flags = 0): Promise<Buffer> {
    if (this.failed !== undefined) return Promise.reject(this.failed)
    const handle = this.nextHandle++
    const what = `${P.commandName(type)} ${offset}+${length}`
    const p = new Promise<Buffer>((resolve, reject) => {
      this.waiting.set(handle, { length: type === P.CMD_READ ? length : 0, resolve, reject, what })
    })
    const hdr = P.encodeRequest(type, handle, offset, length, flags)
    this.socket.write(payload !== undefined ? Buffer.concat([hdr, payload]) : hdr)
    return p
  }

  read (offset: number, length: number): Promise<Buffer> { return this.request(P.CMD_READ, offset, length) }
  async write (offset: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<void> { await this.request(P.CMD_WRITE, offset, data.length, data, opts.fua === true ? P.CMD_FLAG_FUA : 0) }
  async flush (): Promise<void> { await this.request(P.CMD_FLUSH, 0, 0) }
  async trim (offset: number, length: number): Promise<void> { await this.request(P.CMD_TRIM, offset, length) }

  /** Sends NBD_CMD_DISC (the server finishes outstanding requests first) and waits for the close. */
  async close (): Promise<void> {
    if (!this.socket.destroyed) {
      this.socket.end(P.encodeRequest(P.CMD_DISC, this.nextHandle++, 0, 0))
      await new Promise<void>(resolve => { this.socket.once('close', () => resolve()); setTimeout(() => { this.socket.destroy(); resolve() }, 2000).unref() })
    }
  }
}
