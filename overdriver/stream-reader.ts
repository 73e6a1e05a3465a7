/**
 * Reads exact byte counts from a socket without copying more than needed, for the NBD and
 * page repository protocols. Pauses the socket while more than `highWater` bytes are buffered
 * and nobody asks for them, so a peer that floods us cannot grow our memory without bound.
 */
import type { Socket } from 'node:net'

/** The stream ended or failed before the bytes asked for arrived. */
export class StreamClosedError extends Error {
  constructor (message = 'connection closed') { super(message); this.name = 'StreamClosedError' }
}

export class StreamReader {
  private chunks: Buffer[] = []
  private buffered = 0
  private want = 0
  private waiter: { resolve: (b: Buffer) => void, reject: (e: Error) => void } | undefined
  private closed: Error | undefined
  private paused = false
  private readonly socket: Socket
  private readonly highWater: number

  constructor (socket: Socket, opts: { highWater?: number } = {}) {
    this.socket = socket
    this.highWater = opts.highWater ?? 4 * 1024 * 1024
    socket.on('data', (b: Buffer) => {
      this.chunks.push(b)
      this.buffered += b.length
      this.serve()
      if (this.buffered > this.highWater + this.want && !this.paused) { this.paused = true; socket.pause() }
    })
    const close = (e?: Error): void => {
      if (this.closed !== undefined) return
      this.closed = e ?? new StreamClosedError()
      if (this.waiter !== undefined) {
        const w = this.waiter
        this.waiter = undefined
        w.reject(this.closed)
      }
    }
    socket.on('end', () => close())
    socket.on('close', () => close())
    socket.on('error', e => close(new StreamClosedError(`connection failed: ${e.message}`)))
  }

  /** Bytes received and not yet read. */
  get available (): number { return this.buffered }

  /** The next n bytes if they have arrived, else undefined (never waits). */
  tryRead (n: number): Buffer | undefined {
    if (this.buffered < n || this.waiter !== undefined) return undefined
    return this.take(n)
  }

  /** The next n bytes; rejects with StreamClosedError if the stream ends first. One read at a time. */
  read (n: number): Promise<Buffer> {
    if (this.waiter !== undefined) return Promise.reject(new Error('StreamReader: concurrent read'))
    if (this.buffered >= n) return Promise.resolve(this.take(n))
    if (this.closed !== undefined) return Promise.reject(this.closed)
    return new Promise((resolve, reject) => {
      this.want = n
      this.waiter = { resolve, reject }
      if (this.paused) { this.paused = false; this.socket.resume() }
    })
  }

  private serve (): void {
    if (this.waiter !== undefined && this.buffered >= this.want) {
      const w = this.waiter
      this.waiter = undefined
      const b = this.take(this.want)
      this.want = 0
      w.resolve(b)
    }
  }

  private take (n: number): Buffer {
    let out: Buffer
    const first = this.chunks[0]
    if (n === 0) out = Buffer.alloc(0)
    else if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let pos = 0
      while (pos < n) {
        const c = this.chunks[0]
        if (c === undefined) break
        const k = Math.min(c.length, n - pos)
        c.copy(out, pos, 0, k)
        pos += k
        if (k === c.length) this.chunks.shift()
        else this.chunks[0] = c.subarray(k)
      }
    }
    this.buffered -= n
    if (this.paused && this.buffered <= this.highWater) { this.paused = false; this.socket.resume() }
    return out
  }
}
