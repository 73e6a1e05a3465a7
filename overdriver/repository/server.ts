/**
 * A page repository: holds 4 KiB swap pages of VMs on other hosts in memory (seed 002 §6.2:
 * excess space for cooperative swap). Pages are addressed by (capability, page id); each VM
 * gets its own capability from an admin ISSUE call; a capacity limit in pages answers
 * NO_ROOM when reached. Every request is validated; malformed ones close the connection with
 * a reason (event 'repository.rejected'), never the process.
 *
 * Hostile or broken peers cannot grow its memory without bound: connections are capped (in all
 * and per peer address; one over the cap gets a BAD_REQUEST reply with the reason and is
 * closed; before that, TCP connections still in their TLS handshake are capped too), and
 * replies are written with backpressure: while more than `replyBufferBytes` of replies wait for
 * a peer that does not read them, no further request of that connection is read (its requests
 * then wait in the kernel, and TCP stops the peer); a peer that reads nothing for `stalledMs`
 * is disconnected with a reason.
 *
 * The socket layer is the `listener` passed in (./transport.ts): hosts run it with TLS-PSK (a
 * peer without the repository's key fails the handshake: 'repository.rejected' with the
 * reason, and it never reaches the protocol); clear TCP is the library default.
 */
import { channel } from 'node:diagnostics_channel'
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { AddressInfo, Server, Socket } from 'node:net'
import { PAGE_SIZE } from '../constants.ts'
import { StreamClosedError, StreamReader } from '../stream-reader.ts'
import * as P from './protocol.ts'
import { clearListener, type RepositoryListener } from './transport.ts'

export const REPOSITORY_CHANNEL = 'supercloud:overdriver:repository'
/** TCP connections allowed beyond `maxConnections` while their handshake runs (more are closed unread). */
export const HANDSHAKE_ROOM = 16
const diag = channel(REPOSITORY_CHANNEL)

export type RepositoryEvent =
  | { type: 'repository.rejected', remote: string, reason: string }
  | { type: 'repository.issued', vm: string, maxPages?: number }
  | { type: 'repository.revoked', vm: string, pages: number }

export interface PageRepositoryOptions {
  /** Pages this repository may hold in total (its share of the host's excess memory / 4 KiB). */
  capacityPages: number
  /** 16-byte admin token for ISSUE/REVOKE; random when absent (read it from `adminToken`). */
  adminToken?: Buffer
  /** Connections at once, in all (default 256). */
  maxConnections?: number
  /** Connections at once from one peer address (default 64). */
  maxConnectionsPerPeer?: number
  /** Reply bytes a connection may have waiting for its peer before its next request is read (default 1 MiB). */
  replyBufferBytes?: number
  /** A peer that reads none of its waiting replies for this long is disconnected (default 30 s). */
  stalledMs?: number
  /** The socket layer (default clear TCP; hosts pass pskListener: TLS-PSK, nothing in clear). */
  listener?: RepositoryListener
  onEvent?: (e: RepositoryEvent) => void
}

interface Holder { vm: string, maxPages?: number, pages: Map<number, Buffer> }

export interface RepositoryStats {
  capacityPages: number
  usedPages: number
  vms: Array<{ vm: string, pages: number, maxPages?: number }>
  requests: { put: number, get: number, del: number, rejected: number }
}

export class PageRepository {
  readonly adminToken: Buffer
  readonly capacityPages: number
  private usedPages = 0
  private readonly holders = new Map<string, Holder>()
  private readonly free: Buffer[] = []
  private readonly sockets = new Set<Socket>()
  /** Open connections per peer address. */
  private readonly perPeer = new Map<string, number>()
  /** Connections refused over a cap, until they are gone. */
  private readonly refused = new Set<Socket>()
  /** Every accepted TCP connection, handshake or not (close() ends them). */
  private readonly raw = new Set<Socket>()
  private server: Server | undefined
  private readonly opts: PageRepositoryOptions
  private readonly counts = { put: 0, get: 0, del: 0, rejected: 0 }

  constructor (opts: PageRepositoryOptions) {
    if (!Number.isInteger(opts.capacityPages) || opts.capacityPages < 0) throw new RangeError(`capacityPages must be an integer >= 0, got ${opts.capacityPages}`)
    if (opts.adminToken !== undefined && opts.adminToken.length !== P.TOKEN_SIZE) throw new RangeError(`adminToken must be ${P.TOKEN_SIZE} bytes`)
    this.opts = opts
    this.capacityPages = opts.capacityPages
    this.adminToken = opts.adminToken ?? randomBytes(P.TOKEN_SIZE)
  }

  async listen (port: number, host = '127.0.0.1'): Promise<number> {
    const server = (this.opts.listener ?? clearListener).createServer(s => this.accept(s), (remote, reason) => {
      this.counts.rejected++
      this.emit({ type: 'repository.rejected', remote, reason })
    })
    // Before any handshake: TCP connections beyond the protocol's cap plus room for handshakes in
    // flight are closed by the kernel-facing layer at once (Node's maxConnections), so peers that
    // open connections and never finish a TLS handshake hold a bounded number of sockets, each for
    // at most the handshake timeout. Within it, `accept` applies the caps with their reasons.
    server.maxConnections = (this.opts.maxConnections ?? 256) + HANDSHAKE_ROOM
    server.on('connection', (s: Socket) => { this.raw.add(s); s.once('close', () => this.raw.delete(s)) })
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => { server.off('error', reject); resolve() })
    })
    server.on('error', () => {})
    return (server.address() as AddressInfo).port
  }

  async close (): Promise<void> {
    for (const s of [...this.sockets, ...this.refused, ...this.raw]) s.destroy()
    const srv = this.server
    this.server = undefined
    if (srv !== undefined) await new Promise<void>(resolve => srv.close(() => resolve()))
  }

  /** Issues a capability for a VM (the same as the ISSUE request, for in-process use). */
  issue (vm: string, maxPages?: number): Buffer {
    const cap = randomBytes(P.TOKEN_SIZE)
    this.holders.set(cap.toString('hex'), { vm, ...(maxPages !== undefined ? { maxPages } : {}), pages: new Map() })
    this.emit({ type: 'repository.issued', vm, ...(maxPages !== undefined ? { maxPages } : {}) })
    return cap
  }

  /** Drops a capability and its pages; returns how many pages were freed (-1 if unknown). */
  revoke (cap: Buffer): number {
    const key = cap.toString('hex')
    const h = this.holders.get(key)
    if (h === undefined) return -1
    this.holders.delete(key)
    this.usedPages -= h.pages.size
    this.emit({ type: 'repository.revoked', vm: h.vm, pages: h.pages.size })
    return h.pages.size
  }

  stats (): RepositoryStats {
    return {
      capacityPages: this.capacityPages,
      usedPages: this.usedPages,
      vms: [...this.holders.values()].map(h => ({ vm: h.vm, pages: h.pages.size, ...(h.maxPages !== undefined ? { maxPages: h.maxPages } : {}) })),
      requests: { ...this.counts }
    }
  }

  private emit (e: RepositoryEvent): void {
    if (diag.hasSubscribers) diag.publish(e)
    try { this.opts.onEvent?.(e) } catch { /* listener bug */ }
  }

  private accept (socket: Socket): void {
    socket.on('error', () => {})
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? ''}`
    const peer = socket.remoteAddress ?? '?'
    const max = this.opts.maxConnections ?? 256
    const maxPeer = this.opts.maxConnectionsPerPeer ?? 64
    const fromPeer = this.perPeer.get(peer) ?? 0
    const refuse = (reason: string): void => {
      // Read (and drop) what it sends until it goes, so its end is seen; close() ends it too.
      this.refused.add(socket)
      socket.on('close', () => this.refused.delete(socket))
      socket.resume()
      this.reject(socket, remote, 0, reason)
    }
    if (this.sockets.size >= max) { refuse(`repository has ${this.sockets.size} connections, its limit`); return }
    if (fromPeer >= maxPeer) { refuse(`${peer} has ${fromPeer} connections to this repository, the limit per peer`); return }
    this.sockets.add(socket)
    this.perPeer.set(peer, fromPeer + 1)
    socket.setNoDelay(true)
    socket.on('close', () => {
      this.sockets.delete(socket)
      const n = (this.perPeer.get(peer) ?? 1) - 1
      if (n > 0) this.perPeer.set(peer, n); else this.perPeer.delete(peer)
    })
    const reader = new StreamReader(socket, { highWater: 8 * 1024 * 1024 })
    this.serve(socket, reader, remote).catch(err => {
      if (!(err instanceof StreamClosedError)) this.reject(socket, remote, 0, `internal error: ${(err as Error).message}`)
    })
  }

  private reject (socket: Socket, remote: string, id: number, reason: string): void {
    this.counts.rejected++
    this.emit({ type: 'repository.rejected', remote, reason })
    if (!socket.destroyed) socket.end(P.encodeReply(P.STATUS.BAD_REQUEST, id, Buffer.from(reason)))
    setTimeout(() => socket.destroy(), 1000).unref()
  }

  private async serve (socket: Socket, reader: StreamReader, remote: string): Promise<void> {
    for (;;) {
      const hb = reader.tryRead(P.REQUEST_HEADER_SIZE) ?? await reader.read(P.REQUEST_HEADER_SIZE)
      const h = P.parseRequestHeader(hb)
      if (typeof h === 'string') { this.reject(socket, remote, hb.length >= 12 ? hb.readUInt32BE(8) : 0, h); return }
      const payload = h.length === 0 ? Buffer.alloc(0) : reader.tryRead(h.length) ?? await reader.read(h.length)
      const reply = this.handle(h, payload)
      socket.write(reply)
      if (socket.writableLength > (this.opts.replyBufferBytes ?? 1024 * 1024)) await this.drained(socket, remote)
    }
  }

  /** Waits until the peer read the replies waiting for it; disconnects it (StreamClosedError) when it reads nothing for `stalledMs`. */
  private async drained (socket: Socket, remote: string): Promise<void> {
    const stalledMs = this.opts.stalledMs ?? 30000
    if (socket.destroyed) throw new StreamClosedError()
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer)
        socket.off('drain', onDrain)
        socket.off('close', onClose)
        if (err === undefined) resolve(); else reject(err)
      }
      const onDrain = (): void => { done() }
      const onClose = (): void => { done(new StreamClosedError()) }
      const timer = setTimeout(() => {
        this.counts.rejected++
        this.emit({ type: 'repository.rejected', remote, reason: `peer read none of its ${socket.writableLength} bytes of replies for ${stalledMs} ms` })
        socket.destroy()
        done(new StreamClosedError())
      }, stalledMs)
      socket.on('drain', onDrain)
      socket.on('close', onClose)
    })
  }

  private handle (h: P.RequestHeader, payload: Buffer): Buffer {
    const admin = (): boolean => timingSafeEqual(h.token, this.adminToken)
    switch (h.op) {
      case P.OP.PING: return P.encodeReply(P.STATUS.OK, h.id)
      case P.OP.ISSUE: {
        if (!admin()) return P.encodeReply(P.STATUS.DENIED, h.id, Buffer.from('ISSUE needs the admin token'))
        let req: unknown
        try { req = JSON.parse(payload.toString('utf8')) } catch { return P.encodeReply(P.STATUS.BAD_REQUEST, h.id, Buffer.from('ISSUE payload is not JSON')) }
        const r = req as { vm?: unknown, maxPages?: unknown }
        if (typeof r !== 'object' || r === null || typeof r.vm !== 'string' || r.vm.length === 0 || r.vm.length > 64) return P.encodeReply(P.STATUS.BAD_REQUEST, h.id, Buffer.from('ISSUE payload needs {"vm": "<name>"}'))
        if (r.maxPages !== undefined && (typeof r.maxPages !== 'number' || !Number.isInteger(r.maxPages) || r.maxPages < 0)) return P.encodeReply(P.STATUS.BAD_REQUEST, h.id, Buffer.from('maxPages must be a whole number >= 0'))
        return P.encodeReply(P.STATUS.OK, h.id, this.issue(r.vm, r.maxPages as number | undefined))
      }
      case P.OP.REVOKE: {
        if (!admin()) return P.encodeReply(P.STATUS.DENIED, h.id, Buffer.from('REVOKE needs the admin token'))
        if (payload.length !== P.TOKEN_SIZE) return P.encodeReply(P.STATUS.BAD_REQUEST, h.id, Buffer.from('REVOKE payload is a 16-byte capability'))
        const n = this.revoke(payload)
        return n < 0 ? P.encodeReply(P.STATUS.BAD_CAPABILITY, h.id) : P.encodeReply(P.STATUS.OK, h.id)
      }
      case P.OP.STATS: {
        // It lists every VM the repository serves: for the supercloud (admin token), not for one VM's capability.
        if (!admin()) return P.encodeReply(P.STATUS.DENIED, h.id, Buffer.from('STATS needs the admin token'))
        return P.encodeReply(P.STATUS.OK, h.id, Buffer.from(JSON.stringify(this.stats())))
      }
    }
    const holder = this.holders.get(h.token.toString('hex'))
    if (holder === undefined) return P.encodeReply(P.STATUS.BAD_CAPABILITY, h.id)
    switch (h.op) {
      case P.OP.PUT: {
        this.counts.put++
        let page = holder.pages.get(h.pageId)
        if (page === undefined) {
          if (this.usedPages >= this.capacityPages) return P.encodeReply(P.STATUS.NO_ROOM, h.id, Buffer.from(`repository full (${this.capacityPages} pages)`))
          if (holder.maxPages !== undefined && holder.pages.size >= holder.maxPages) return P.encodeReply(P.STATUS.NO_ROOM, h.id, Buffer.from(`${holder.vm} reached its ${holder.maxPages} pages`))
          page = this.free.pop() ?? Buffer.alloc(PAGE_SIZE)
          holder.pages.set(h.pageId, page)
          this.usedPages++
        }
        payload.copy(page)
        return P.encodeReply(P.STATUS.OK, h.id)
      }
      case P.OP.GET: {
        this.counts.get++
        const page = holder.pages.get(h.pageId)
        return page === undefined ? P.encodeReply(P.STATUS.NOT_FOUND, h.id) : P.encodeReply(P.STATUS.OK, h.id, page)
      }
      case P.OP.DEL: {
        this.counts.del++
        const page = holder.pages.get(h.pageId)
        if (page === undefined) return P.encodeReply(P.STATUS.NOT_FOUND, h.id)
        holder.pages.delete(h.pageId)
        this.usedPages--
        if (this.free.length < 1024) this.free.push(page)
        return P.encodeReply(P.STATUS.OK, h.id)
      }
    }
    return P.encodeReply(P.STATUS.BAD_REQUEST, h.id, Buffer.from(`operation ${h.op} not handled`))
  }
}
