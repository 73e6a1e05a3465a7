/**
 * A TypeScript NBD server (fixed newstyle handshake; NBD_OPT_GO, NBD_OPT_INFO,
 * NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT; simple replies; READ, WRITE, FLUSH, TRIM,
 * WRITE_ZEROES, DISC) over TCP or a unix socket. Each export is a SwapPath; the server
 * counts paging operations per export. QEMU's own NBD client connects to it, e.g.
 * `-blockdev driver=nbd,server.type=unix,server.path=<sock>,export=swap,node-name=swap0`.
 *
 * Every protocol message is checked: a bad magic, an oversized length or an unknown client
 * flag closes the connection with a reason (event 'nbd.rejected'); an out-of-range request
 * gets an EINVAL reply and the connection stays usable. Nothing a peer sends can throw out
 * of the server.
 */
import { channel } from 'node:diagnostics_channel'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { rm } from 'node:fs/promises'
import { StreamClosedError, StreamReader } from '../stream-reader.ts'
import { pagesTouched, zeroCounters, type PagingCounters, type SwapPath } from '../swap-path.ts'
import * as P from './protocol.ts'

/** diagnostics_channel carrying every NbdServerEvent. */
export const NBD_CHANNEL = 'supercloud:overdriver:nbd'
const diag = channel(NBD_CHANNEL)

export type NbdServerEvent =
  | { type: 'nbd.connected', remote: string }
  | { type: 'nbd.export-opened', remote: string, export: string }
  | { type: 'nbd.rejected', remote: string, export?: string, reason: string }
  | { type: 'nbd.request-failed', remote: string, export: string, command: string, errno: number, reason: string }
  | { type: 'nbd.disconnected', remote: string, export?: string }

export interface NbdExport {
  readonly name: string
  /** Replaceable: the agent switches between disk and cooperative swap paths. */
  path: SwapPath
  readonly counters: PagingCounters
}

export interface NbdServerOptions {
  /** Called for every connection, rejection and failed request (also on NBD_CHANNEL). */
  onEvent?: (e: NbdServerEvent) => void
  /** Handshake must finish within this time (default 30 s). */
  handshakeTimeoutMs?: number
  /** Requests processed concurrently per connection (default 64). */
  maxInFlight?: number
}

export type Listen = { port: number, host?: string } | { path: string }

export class NbdServer {
  private readonly exports = new Map<string, NbdExport>()
  private readonly sockets = new Set<Socket>()
  private server: Server | undefined
  private readonly opts: NbdServerOptions
  private unixPath: string | undefined

  constructor (opts: NbdServerOptions = {}) {
    this.opts = opts
  }

  /** Adds (or replaces the path of) an export. Names are what QEMU passes as `export=`. */
  addExport (name: string, path: SwapPath): NbdExport {
    if (name.length === 0 || Buffer.byteLength(name) > P.MAX_EXPORT_NAME) throw new RangeError(`export name must be 1..${P.MAX_EXPORT_NAME} bytes`)
    const existing = this.exports.get(name)
    if (existing !== undefined) { existing.path = path; return existing }
    const e: NbdExport = { name, path, counters: zeroCounters() }
    this.exports.set(name, e)
    return e
  }

  getExport (name: string): NbdExport | undefined { return this.exports.get(name) }

  exportNames (): string[] { return [...this.exports.keys()] }

  /** Removes an export; its open connections are closed. Does not close its SwapPath. */
  removeExport (name: string): void {
    this.exports.delete(name)
    for (const s of this.sockets) if ((s as Socket & { nbdExport?: string }).nbdExport === name) s.destroy()
  }

  /** Starts listening; returns the TCP port (0 for a unix socket). A stale unix socket file is replaced. */
  async listen (where: Listen): Promise<number> {
    const server = createServer(s => this.accept(s))
    server.on('error', () => { /* reported through listen() or ignored after */ })
    this.server = server
    if ('path' in where) {
      await rm(where.path, { force: true })
      this.unixPath = where.path
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      if ('path' in where) server.listen(where.path, () => { server.off('error', reject); resolve() })
      else server.listen(where.port, where.host ?? '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    const a = server.address()
    return typeof a === 'object' && a !== null ? (a as AddressInfo).port : 0
  }

  /** Stops accepting, closes every connection. Exports' SwapPaths stay open (the caller owns them). */
  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    const srv = this.server
    this.server = undefined
    if (srv !== undefined) await new Promise<void>(resolve => srv.close(() => resolve()))
    if (this.unixPath !== undefined) await rm(this.unixPath, { force: true })
  }

  private emit (e: NbdServerEvent): void {
    if (diag.hasSubscribers) diag.publish(e)
    try { this.opts.onEvent?.(e) } catch { /* a listener's bug is not the peer's fault */ }
  }

  private accept (socket: Socket): void {
    const remote = socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort ?? ''}` : 'unix'
    this.sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('error', () => { /* StreamReader reports it as a close */ })
    socket.on('close', () => this.sockets.delete(socket))
    this.emit({ type: 'nbd.connected', remote })
    const conn = new Connection(this, socket, remote, this.opts)
    conn.run().catch(err => {
      // Only programming errors get here; never let them escape.
      this.emit({ type: 'nbd.rejected', remote, reason: `internal error: ${(err as Error).message}` })
      socket.destroy()
    })
  }

  /** @internal */
  _emit (e: NbdServerEvent): void { this.emit(e) }
}

/** Thrown inside a connection to close it with a reason. */
class Reject extends Error {}

class Connection {
  private readonly reader: StreamReader
  private exportName: string | undefined
  private closing = false

  constructor (private readonly server: NbdServer, private readonly socket: Socket, private readonly remote: string, private readonly opts: NbdServerOptions) {
    this.reader = new StreamReader(socket, { highWater: P.MAX_PAYLOAD + 1024 * 1024 })
  }

  private send (b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b)
  }

  async run (): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      timer = setTimeout(() => { this.reject('handshake not finished in time') }, this.opts.handshakeTimeoutMs ?? 30_000)
      timer.unref()
      const exp = await this.handshake()
      clearTimeout(timer)
      timer = undefined
      if (exp === undefined) { this.socket.end(); return }
      this.exportName = exp.name;
      (this.socket as Socket & { nbdExport?: string }).nbdExport = exp.name
      this.server._emit({ type: 'nbd.export-opened', remote: this.remote, export: exp.name })
      await this.transmission(exp)
    } catch (e) {
      if (e instanceof Reject) this.reject(e.message)
      else if (!(e instanceof StreamClosedError)) this.reject(`internal error: ${(e as Error).message}`)
    } finally {
      if (timer !== undefined) clearTimeout(timer)
      if (!this.closing) this.server._emit({ type: 'nbd.disconnected', remote: this.remote, ...(this.exportName !== undefined ? { export: this.exportName } : {}) })
      this.closing = true
    }
  }

  private reject (reason: string): void {
    if (this.closing) return
    this.closing = true
    this.server._emit({ type: 'nbd.rejected', remote: this.remote, ...(this.exportName !== undefined ? { export: this.exportName } : {}), reason })
    this.socket.destroy()
  }

  /** Returns the export to serve, or undefined when the client aborted. */
  private async handshake (): Promise<NbdExport | undefined> {
    this.send(P.serverGreeting())
    const clientFlags = (await this.reader.read(4)).readUInt32BE(0)
    const known = P.CLIENT_FLAG_FIXED_NEWSTYLE | P.CLIENT_FLAG_NO_ZEROES
    if ((clientFlags & ~known) !== 0) throw new Reject(`unknown client flags 0x${clientFlags.toString(16)}`)
    if ((clientFlags & P.CLIENT_FLAG_FIXED_NEWSTYLE) === 0) throw new Reject('client does not speak fixed newstyle')
    const noZeroes = (clientFlags & P.CLIENT_FLAG_NO_ZEROES) !== 0
    for (let n = 0; ; n++) {
      if (n > 64) throw new Reject('more than 64 handshake options')
      const h = P.parseOptionHeader(await this.reader.read(P.OPTION_HEADER_SIZE))
      if (h.magic !== P.IHAVEOPT) throw new Reject(`bad option magic 0x${h.magic.toString(16)}`)
      if (h.length > P.MAX_OPTION_LENGTH) throw new Reject(`${P.optionName(h.option)} data of ${h.length} bytes is above ${P.MAX_OPTION_LENGTH}`)
      const data = await this.reader.read(h.length)
      const errReply = (type: number, msg: string): void => this.send(P.optionReply(h.option, type, Buffer.from(msg)))
      switch (h.option) {
        case P.OPT_EXPORT_NAME: {
          const name = data.toString('utf8')
          const exp = this.server.getExport(name)
          // This option has no error reply: an unknown export closes the connection.
          if (exp === undefined) throw new Reject(`no export named '${name.slice(0, 64)}'`)
          const b = Buffer.alloc(10 + (noZeroes ? 0 : 124))
          b.writeBigUInt64BE(BigInt(exp.path.sizeBytes), 0)
          b.writeUInt16BE(transmissionFlags(), 8)
          this.send(b)
          return exp
        }
        case P.OPT_ABORT:
          this.send(P.optionReply(h.option, P.REP_ACK))
          return undefined
        case P.OPT_LIST: {
          if (h.length !== 0) { errReply(P.REP_ERR_INVALID, 'LIST takes no data'); break }
          for (const name of this.server.exportNames()) {
            const nb = Buffer.from(name)
            const d = Buffer.alloc(4 + nb.length)
            d.writeUInt32BE(nb.length, 0)
            nb.copy(d, 4)
            this.send(P.optionReply(h.option, P.REP_SERVER, d))
          }
          this.send(P.optionReply(h.option, P.REP_ACK))
          break
        }
        case P.OPT_INFO:
        case P.OPT_GO: {
          const go = P.parseGo(data)
          if (typeof go === 'string') { errReply(P.REP_ERR_INVALID, go); break }
          const exp = this.server.getExport(go.name)
          if (exp === undefined) { errReply(P.REP_ERR_UNKNOWN, `no export named '${go.name.slice(0, 64)}'`); break }
          const info = Buffer.alloc(12)
          info.writeUInt16BE(P.INFO_EXPORT, 0)
          info.writeBigUInt64BE(BigInt(exp.path.sizeBytes), 2)
          info.writeUInt16BE(transmissionFlags(), 10)
          this.send(P.optionReply(h.option, P.REP_INFO, info))
          const bs = Buffer.alloc(14)
          bs.writeUInt16BE(P.INFO_BLOCK_SIZE, 0)
          bs.writeUInt32BE(1, 2) // minimum
          bs.writeUInt32BE(4096, 6) // preferred
          bs.writeUInt32BE(P.MAX_PAYLOAD, 10) // maximum
          this.send(P.optionReply(h.option, P.REP_INFO, bs))
          this.send(P.optionReply(h.option, P.REP_ACK))
          if (h.option === P.OPT_GO) return exp
          break
        }
        case P.OPT_STARTTLS:
          errReply(P.REP_ERR_POLICY, 'TLS is not offered: connect over a unix socket or loopback')
          break
        default:
          errReply(P.REP_ERR_UNSUP, `${P.optionName(h.option)} is not supported`)
      }
    }
  }

  private async transmission (exp: NbdExport): Promise<void> {
    const max = this.opts.maxInFlight ?? 64
    for (;;) {
      const hb = this.reader.tryRead(P.REQUEST_HEADER_SIZE) ?? await this.reader.read(P.REQUEST_HEADER_SIZE)
      const h = P.parseRequestHeader(hb)
      if (h.magic !== P.REQUEST_MAGIC) throw new Reject(`bad request magic 0x${h.magic.toString(16)}`)
      const size = exp.path.sizeBytes
      const inRange = h.offset + h.length <= size
      switch (h.type) {
        case P.CMD_WRITE: {
          if (h.length > P.MAX_PAYLOAD) throw new Reject(`WRITE of ${h.length} bytes is above the ${P.MAX_PAYLOAD} byte maximum`)
          const data = this.reader.tryRead(h.length) ?? await this.reader.read(h.length)
          if (!inRange) { this.fail(exp, h, P.EINVAL, `WRITE at ${h.offset}+${h.length} is past the end (${size})`); break }
          if (h.length === 0) { this.reply(h.handle, 0); break }
          await this.dispatch(max, exp, h, async () => {
            await exp.path.write(h.offset, data, (h.flags & P.CMD_FLAG_FUA) !== 0)
            exp.counters.writeOps++
            exp.counters.writePages += pagesTouched(h.offset, h.length)
            exp.counters.writeBytes += h.length
            this.reply(h.handle, 0)
          })
          break
        }
        case P.CMD_READ: {
          if (h.length > P.MAX_PAYLOAD) { this.fail(exp, h, P.EINVAL, `READ of ${h.length} bytes is above the ${P.MAX_PAYLOAD} byte maximum`); break }
          if (!inRange) { this.fail(exp, h, P.EINVAL, `READ at ${h.offset}+${h.length} is past the end (${size})`); break }
          await this.dispatch(max, exp, h, async () => {
            const data = await exp.path.read(h.offset, h.length)
            exp.counters.readOps++
            exp.counters.readPages += pagesTouched(h.offset, h.length)
            exp.counters.readBytes += h.length
            const r = P.simpleReply(h.handle, 0, data.length)
            data.copy(r, 16)
            this.send(r)
          })
          break
        }
        case P.CMD_FLUSH: {
          const writesBefore = [...this.pendingWrites]
          // Replies to writes are sent only after their data is written; wait for those in flight.
          await this.dispatch(max, exp, h, async () => {
            await Promise.all([...writesBefore])
            await exp.path.flush()
            exp.counters.flushes++
            this.reply(h.handle, 0)
          })
          break
        }
        case P.CMD_TRIM:
        case P.CMD_WRITE_ZEROES: {
          if (!inRange) { this.fail(exp, h, P.EINVAL, `${P.commandName(h.type)} at ${h.offset}+${h.length} is past the end (${size})`); break }
          await this.dispatch(max, exp, h, async () => {
            if (h.type === P.CMD_TRIM) { await exp.path.trim(h.offset, h.length); exp.counters.trims++ } else {
              const chunk = Math.min(h.length, 1024 * 1024)
              const zeros = Buffer.alloc(chunk)
              for (let off = 0; off < h.length; off += chunk) {
                const n = Math.min(chunk, h.length - off)
                await exp.path.write(h.offset + off, n === chunk ? zeros : zeros.subarray(0, n), false)
              }
              exp.counters.writeOps++
              exp.counters.writePages += pagesTouched(h.offset, h.length)
              exp.counters.writeBytes += h.length
            }
            this.reply(h.handle, 0)
          })
          break
        }
        case P.CMD_DISC:
          await Promise.all([...this.pending])
          this.closing = true
          this.socket.end()
          this.server._emit({ type: 'nbd.disconnected', remote: this.remote, export: exp.name })
          return
        default:
          this.fail(exp, h, P.EINVAL, `${P.commandName(h.type)} is not supported`)
      }
    }
  }

  private reply (handle: Buffer, error: number): void {
    this.send(P.simpleReply(handle, error))
  }

  private fail (exp: NbdExport, h: P.RequestHeader, errno: number, reason: string): void {
    exp.counters.errors++
    this.server._emit({ type: 'nbd.request-failed', remote: this.remote, export: exp.name, command: P.commandName(h.type), errno, reason })
    this.reply(h.handle, errno)
  }

  /** Runs one request concurrently with others; waits while `max` are in flight. */
  private async dispatch (max: number, exp: NbdExport, h: P.RequestHeader, work: () => Promise<void>): Promise<void> {
    while (this.pending.size >= max) await Promise.race(this.pending)
    const p: Promise<void> = work().catch(err => {
      this.fail(exp, h, P.EIO, `${P.commandName(h.type)} at ${h.offset}+${h.length}: ${(err as Error).message}`)
    }).finally(() => { this.pending.delete(p); this.pendingWrites.delete(p) })
    this.pending.add(p)
    if (h.type === P.CMD_WRITE || h.type === P.CMD_WRITE_ZEROES) this.pendingWrites.add(p)
  }

  private readonly pending = new Set<Promise<void>>()
  private readonly pendingWrites = new Set<Promise<void>>()
}

function transmissionFlags (): number {
  return P.TFLAG_HAS_FLAGS | P.TFLAG_SEND_FLUSH | P.TFLAG_SEND_FUA | P.TFLAG_SEND_TRIM | P.TFLAG_SEND_WRITE_ZEROES
}
