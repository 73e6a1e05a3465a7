/**
 * Client of a page repository: one connection (TLS-PSK or clear TCP, from the connector passed
 * in: ./transport.ts), pipelined requests matched by id. When the connection fails every
 * outstanding and later request rejects with RepositoryError ('connection'); `alive` turns
 * false. Cooperative swap treats that as "read from disk".
 */
import type { Socket } from 'node:net'
import { RepositoryError } from '../errors.ts'
import { StreamReader } from '../stream-reader.ts'
import * as P from './protocol.ts'
import type { RepositoryStats } from './server.ts'
import { clearConnector, formatAddress, type RepositoryAddress, type RepositoryConnector } from './transport.ts'

export { formatAddress, type RepositoryAddress } from './transport.ts'

export function parseAddress (s: string): RepositoryAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s)
  const port = Number(m?.[3])
  if (m === null || !(port > 0 && port < 65536)) throw new RangeError(`'${s}' is not host:port`)
  return { host: m[1] ?? m[2] ?? '', port }
}

export class RepositoryClient {
  readonly address: RepositoryAddress
  private readonly socket: Socket
  private readonly reader: StreamReader
  private nextId = 1
  private readonly waiting = new Map<number, { resolve: (r: { status: number, payload: Buffer }) => void, reject: (e: Error) => void }>()
  private failure: RepositoryError | undefined

  private constructor (address: RepositoryAddress, socket: Socket) {
    this.address = address
    this.socket = socket
    this.reader = new StreamReader(socket)
    socket.on('close', () => this.fail(new RepositoryError('connection', `repository ${formatAddress(address)} closed the connection`)))
    void this.readReplies()
  }

  /** `connector`: how to reach it (default clear TCP; hosts use pskConnector: TLS-PSK, handshake done before this resolves). */
  static async connect (address: RepositoryAddress, opts: { timeoutMs?: number, connector?: RepositoryConnector } = {}): Promise<RepositoryClient> {
    const socket = await (opts.connector ?? clearConnector)(address, opts.timeoutMs ?? 5000)
    return new RepositoryClient(address, socket)
  }

  get alive (): boolean { return this.failure === undefined }
  /** Why the connection failed (e.g. the repository's reason for refusing it), once it did. */
  get failureReason (): string | undefined { return this.failure?.message }

  private fail (e: RepositoryError): void {
    if (this.failure !== undefined) return
    this.failure = e
    for (const w of this.waiting.values()) w.reject(e)
    this.waiting.clear()
    this.socket.destroy()
  }

  private async readReplies (): Promise<void> {
    try {
      for (;;) {
        const h = P.parseReplyHeader(await this.reader.read(P.REPLY_HEADER_SIZE))
        if (typeof h === 'string') throw new RepositoryError('bad-request', `repository ${formatAddress(this.address)}: ${h}`)
        const payload = h.length > 0 ? await this.reader.read(h.length) : Buffer.alloc(0)
        const w = this.waiting.get(h.id)
        if (w === undefined) {
          if (h.status === P.STATUS.BAD_REQUEST) throw new RepositoryError('bad-request', `repository ${formatAddress(this.address)} closed the connection: ${payload.toString('utf8')}`)
          throw new RepositoryError('bad-request', `repository ${formatAddress(this.address)} answered unknown request ${h.id}`)
        }
        this.waiting.delete(h.id)
        w.resolve({ status: h.status, payload })
      }
    } catch (e) {
      this.fail(e instanceof RepositoryError ? e : new RepositoryError('connection', `repository ${formatAddress(this.address)}: ${(e as Error).message}`, e))
    }
  }

  private request (op: number, token: Buffer, pageId: number, payload?: Buffer): Promise<{ status: number, payload: Buffer }> {
    if (this.failure !== undefined) return Promise.reject(this.failure)
    const id = this.nextId
    this.nextId = (this.nextId + 1) >>> 0 || 1
    const p = new Promise<{ status: number, payload: Buffer }>((resolve, reject) => this.waiting.set(id, { resolve, reject }))
    this.socket.write(P.encodeRequest(op, id, token, pageId, payload))
    return p
  }

  private check (r: { status: number, payload: Buffer }, what: string): Buffer {
    if (r.status === P.STATUS.OK) return r.payload
    const name = P.STATUS_NAME[r.status] ?? `status-${r.status}`
    throw new RepositoryError(name, `${what} on repository ${formatAddress(this.address)}: ${name}${r.payload.length > 0 ? `: ${r.payload.toString('utf8')}` : ''}`)
  }

  async put (cap: Buffer, pageId: number, page: Buffer): Promise<void> {
    this.check(await this.request(P.OP.PUT, cap, pageId, page), `PUT page ${pageId}`)
  }

  /** The page, or undefined when the repository does not hold it. */
  async get (cap: Buffer, pageId: number): Promise<Buffer | undefined> {
    const r = await this.request(P.OP.GET, cap, pageId)
    if (r.status === P.STATUS.NOT_FOUND) return undefined
    return this.check(r, `GET page ${pageId}`)
  }

  /** True when the page was there. */
  async del (cap: Buffer, pageId: number): Promise<boolean> {
    const r = await this.request(P.OP.DEL, cap, pageId)
    if (r.status === P.STATUS.NOT_FOUND) return false
    this.check(r, `DEL page ${pageId}`)
    return true
  }

  async issue (adminToken: Buffer, vm: string, maxPages?: number): Promise<Buffer> {
    return this.check(await this.request(P.OP.ISSUE, adminToken, 0, Buffer.from(JSON.stringify({ vm, ...(maxPages !== undefined ? { maxPages } : {}) }))), `ISSUE for ${vm}`)
  }

  async revoke (adminToken: Buffer, cap: Buffer): Promise<void> {
    this.check(await this.request(P.OP.REVOKE, adminToken, 0, cap), 'REVOKE')
  }

  async stats (token: Buffer): Promise<RepositoryStats> {
    return JSON.parse(this.check(await this.request(P.OP.STATS, token, 0), 'STATS').toString('utf8')) as RepositoryStats
  }

  async ping (): Promise<void> {
    this.check(await this.request(P.OP.PING, Buffer.alloc(P.TOKEN_SIZE), 0), 'PING')
  }

  close (): void {
    this.fail(new RepositoryError('connection', `repository ${formatAddress(this.address)}: client closed`))
  }
}
