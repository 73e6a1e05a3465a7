/**
 * A QMP (QEMU Machine Protocol) client over a unix socket.
 *
 *   const qmp = await QmpClient.connect('/run/x/qmp.sock', { timeoutMs: 5000 })
 *   const st = await qmp.execute<{ status: string }>('query-status')
 *   qmp.on('event', ev => ...)
 *   await qmp.close()
 *
 * Every command carries an `id`; responses are matched by it, so several
 * commands may be in flight. Events are emitted as 'event'. A command that
 * gets no answer within its timeout rejects with QmpError (a late answer is
 * dropped); an error answer rejects with QmpCommandError (QEMU's class/desc).
 */
import { channel } from 'node:diagnostics_channel'
import { EventEmitter } from 'node:events'
import { connect as netConnect, type Socket } from 'node:net'
import { CancelledError, QmpError } from '../../core/errors.ts'
import { QmpCommandError } from './errors.ts'

export interface QmpEvent {
  event: string
  data?: Record<string, unknown>
  timestamp?: { seconds: number, microseconds: number }
}

export interface QmpGreeting {
  version: { qemu: { major: number, minor: number, micro: number }, package: string }
  capabilities: string[]
}

export interface QmpCallOptions {
  /** Reject with QmpError when no answer arrives within this many ms. Default: the client's default (30 s). */
  timeoutMs?: number
  signal?: AbortSignal
}

export interface QmpConnectOptions {
  /** Time allowed for connect + greeting + qmp_capabilities. Default 10 s. */
  timeoutMs?: number
  /** Default per-command timeout. Default 30 s. */
  commandTimeoutMs?: number
  signal?: AbortSignal
}

/**
 * Diagnostics channel carrying QMP traffic: messages `{ socket, dir: 'out', command, id }`,
 * `{ socket, dir: 'in', id, ok, error? }` and `{ socket, dir: 'event', event }`.
 */
export const qmpDiagnostics = channel('supercloud:qemu:qmp')

interface Pending {
  command: string
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  cleanup: () => void
}

/**
 * Splits a byte stream into lines (QMP sends one JSON object per line, ended by CRLF).
 * Exported for reuse; keeps an unfinished trailing line until more data arrives.
 */
export class LineSplitter {
  private buf = ''
  push (chunk: string): string[] {
    this.buf += chunk
    const out: string[] = []
    let nl: number
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '')
      this.buf = this.buf.slice(nl + 1)
      if (line.trim() !== '') out.push(line)
    }
    return out
  }

  get pending (): string { return this.buf }
}

export class QmpClient extends EventEmitter {
  /** The greeting QEMU sent when we connected. */
  readonly greeting: QmpGreeting
  private readonly sock: Socket
  private readonly path: string
  private readonly pending = new Map<number, Pending>()
  private readonly commandTimeoutMs: number
  private nextId = 1
  private closedErr: Error | undefined

  private constructor (sock: Socket, path: string, greeting: QmpGreeting, commandTimeoutMs: number) {
    super()
    this.sock = sock
    this.path = path
    this.greeting = greeting
    this.commandTimeoutMs = commandTimeoutMs
  }

  /** Connects, reads the greeting and negotiates capabilities (leaves capability negotiation mode). */
  static async connect (path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 10_000
    const { sock, greeting, rest, partial } = await new Promise<{ sock: Socket, greeting: QmpGreeting, rest: string[], partial: string }>((resolve, reject) => {
      if (opts.signal?.aborted === true) { reject(new CancelledError('QMP connect')); return }
      const sock = netConnect({ path })
      sock.setEncoding('utf8')
      const splitter = new LineSplitter()
      let done = false
      const finish = (err: Error | undefined, value?: { sock: Socket, greeting: QmpGreeting, rest: string[], partial: string }): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        sock.off('data', onData)
        sock.off('error', onError)
        sock.off('close', onClose)
        if (err !== undefined) { sock.destroy(); reject(err) } else if (value !== undefined) resolve(value)
      }
      const onAbort = (): void => finish(new CancelledError('QMP connect'))
      const onError = (e: Error): void => finish(new QmpError(`cannot connect to QMP socket ${path}: ${e.message}`, e))
      const onClose = (): void => finish(new QmpError(`QMP socket ${path} closed before the greeting`))
      const onData = (chunk: string): void => {
        const lines = splitter.push(chunk)
        if (lines.length === 0) return
        let msg: unknown
        try { msg = JSON.parse(lines[0] ?? '') } catch { finish(new QmpError(`QMP socket ${path} sent a non-JSON greeting: ${(lines[0] ?? '').slice(0, 200)}`)); return }
        const g = (msg as { QMP?: QmpGreeting }).QMP
        if (g === undefined) { finish(new QmpError(`QMP socket ${path} sent no greeting: ${(lines[0] ?? '').slice(0, 200)}`)); return }
        // Anything after the greeting is handled by the client (there should be nothing yet).
        finish(undefined, { sock, greeting: g, rest: lines.slice(1), partial: splitter.pending })
      }
      const timer = setTimeout(() => finish(new QmpError(`no QMP greeting on ${path} within ${timeoutMs} ms`)), timeoutMs)
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      sock.on('data', onData)
      sock.on('error', onError)
      sock.on('close', onClose)
    })
    const client = new QmpClient(sock, path, greeting, opts.commandTimeoutMs ?? 30_000)
    client.attach(rest, partial)
    try {
      await client.execute('qmp_capabilities', undefined, { timeoutMs, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
    } catch (err) {
      client.destroy()
      throw err
    }
    return client
  }

  private attach (lines: string[], partial: string): void {
    const splitter = new LineSplitter()
    splitter.push(partial)
    for (const l of lines) this.handleLine(l)
    this.sock.on('data', (chunk: string) => {
      for (const line of splitter.push(chunk)) {
        this.handleLine(line)
        if (this.closedErr !== undefined) return
      }
    })
    this.sock.on('error', (e: Error) => this.shutdown(new QmpError(`QMP connection error: ${e.message}`, e)))
    this.sock.on('close', () => this.shutdown(new QmpError('QMP connection closed')))
  }

  private handleLine (line: string): void {
    let msg: Record<string, unknown>
    try {
      const parsed: unknown = JSON.parse(line)
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
      msg = parsed as Record<string, unknown>
    } catch {
      // A corrupted stream cannot be resynchronised reliably: fail everything.
      this.shutdown(new QmpError(`QMP protocol error: not a JSON object: ${line.slice(0, 200)}`))
      this.sock.destroy()
      return
    }
    if (typeof msg.event === 'string') {
      if (qmpDiagnostics.hasSubscribers) qmpDiagnostics.publish({ socket: this.path, dir: 'event', event: msg })
      this.emit('event', msg as unknown as QmpEvent)
      return
    }
    if (!('return' in msg) && !('error' in msg)) return
    let id = typeof msg.id === 'number' ? msg.id : undefined
    if (id === undefined) {
      // An answer without id (QEMU echoes ids, but e.g. a parse error has none): the oldest command.
      const first = this.pending.keys().next()
      if (first.done === true) return
      id = first.value
    }
    const p = this.pending.get(id)
    if (p === undefined) return // late answer to a timed-out or cancelled command
    this.pending.delete(id)
    p.cleanup()
    if (qmpDiagnostics.hasSubscribers) qmpDiagnostics.publish({ socket: this.path, dir: 'in', id, ok: !('error' in msg), ...('error' in msg ? { error: msg.error } : {}) })
    if ('error' in msg) {
      const e = (msg.error ?? {}) as { class?: unknown, desc?: unknown }
      p.reject(new QmpCommandError(p.command, String(e.class ?? 'GenericError'), String(e.desc ?? 'unknown error')))
    } else {
      p.resolve(msg.return)
    }
  }

  private shutdown (err: Error): void {
    if (this.closedErr !== undefined) return
    this.closedErr = err
    for (const [id, p] of this.pending) {
      this.pending.delete(id)
      p.cleanup()
      p.reject(new QmpError(`QMP ${p.command}: ${err.message}`, err))
    }
    this.emit('close', err)
  }

  /** True once the connection is closed (by either side). */
  get closed (): boolean { return this.closedErr !== undefined }

  /** Runs one QMP command; resolves its `return` value. */
  execute<T = unknown> (command: string, args?: Record<string, unknown>, opts: QmpCallOptions = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closedErr !== undefined) { reject(new QmpError(`QMP ${command}: ${this.closedErr.message}`, this.closedErr)); return }
      if (opts.signal?.aborted === true) { reject(new CancelledError(`QMP ${command}`)); return }
      const id = this.nextId++
      const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return
        cleanup()
        reject(new QmpError(`QMP ${command} got no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      const onAbort = (): void => {
        if (!this.pending.delete(id)) return
        cleanup()
        reject(new CancelledError(`QMP ${command}`))
      }
      const cleanup = (): void => { clearTimeout(timer); opts.signal?.removeEventListener('abort', onAbort) }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, { command, resolve: v => resolve(v as T), reject, cleanup })
      const msg: Record<string, unknown> = { execute: command, id }
      if (args !== undefined) msg.arguments = args
      if (qmpDiagnostics.hasSubscribers) qmpDiagnostics.publish({ socket: this.path, dir: 'out', command, id })
      this.sock.write(JSON.stringify(msg) + '\n')
    })
  }

  /**
   * Resolves with the next event named `name` (and matching `predicate`). Call it
   * BEFORE the command that causes the event, then await it, so it cannot be missed.
   */
  waitForEvent (name: string, predicate: ((ev: QmpEvent) => boolean) | undefined, timeoutMs: number, signal?: AbortSignal): Promise<QmpEvent> {
    return new Promise<QmpEvent>((resolve, reject) => {
      if (signal?.aborted === true) { reject(new CancelledError(`waiting for QMP event ${name}`)); return }
      const done = (): void => {
        clearTimeout(timer)
        this.off('event', onEvent)
        this.off('close', onClose)
        signal?.removeEventListener('abort', onAbort)
      }
      const onEvent = (ev: QmpEvent): void => {
        if (ev.event !== name || (predicate !== undefined && !predicate(ev))) return
        done(); resolve(ev)
      }
      const onClose = (err: Error): void => { done(); reject(new QmpError(`waiting for QMP event ${name}: ${err.message}`, err)) }
      const onAbort = (): void => { done(); reject(new CancelledError(`waiting for QMP event ${name}`)) }
      const timer = setTimeout(() => { done(); reject(new QmpError(`no QMP event ${name} within ${timeoutMs} ms`)) }, timeoutMs)
      this.on('event', onEvent)
      this.on('close', onClose)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (this.closedErr !== undefined) onClose(this.closedErr)
    })
  }

  /** Closes the connection gracefully; pending commands reject. */
  close (): Promise<void> {
    return new Promise(resolve => {
      if (this.sock.destroyed) { this.shutdown(new QmpError('QMP connection closed by client')); resolve(); return }
      this.sock.once('close', () => resolve())
      this.shutdown(new QmpError('QMP connection closed by client'))
      this.sock.end()
      // QEMU closes its side promptly; do not hang on a peer that does not.
      setTimeout(() => this.sock.destroy(), 1000).unref()
    })
  }

  /** Closes the connection at once. */
  destroy (): void {
    this.shutdown(new QmpError('QMP connection closed by client'))
    this.sock.destroy()
  }
}

/** Connects, runs `fn`, and always closes the connection. */
export async function withQmp<T> (path: string, fn: (qmp: QmpClient) => Promise<T>, opts: QmpConnectOptions = {}): Promise<T> {
  const qmp = await QmpClient.connect(path, opts)
  try {
    return await fn(qmp)
  } finally {
    await qmp.close()
  }
}
