/**
 * node-postgres, called synchronously: the state interface is synchronous (types.ts), so the
 * PostgreSQL store sends each query to a worker thread that runs it (worker-source.ts) and
 * waits on a shared flag (Atomics.wait) until the answer is there, then takes it off the
 * message port (receiveMessageOnPort). The calling thread is blocked for the round trip, as
 * it is for a better-sqlite3 statement.
 */
import { createRequire } from 'node:module'
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads'
import { WORKER_SOURCE } from './worker-source.ts'

/** Which of the worker's two connections a query runs on. */
export type Conn = 'data' | 'lock'

export interface QueryResult { rows: Array<Record<string, unknown>>, rowCount: number }

/** What the worker reported of a failure (node-postgres's error message and SQLSTATE or errno code). */
export class PgCallError extends Error {
  constructor (message: string, readonly code: string | undefined) { super(message) }
}

export interface BridgeOptions {
  connectionString: string
  /** Quoted schema identifier set as the search_path of both connections. */
  schema: string
  connectTimeoutMs?: number
  /** Longest wait for one answer (default 60 s). */
  callTimeoutMs?: number
}

export class SyncPg {
  private readonly worker: Worker
  private readonly port: MessagePort
  private readonly flag: Int32Array
  private readonly callTimeoutMs: number
  private readonly notify: MessagePort
  private closed = false

  constructor (opts: BridgeOptions) {
    const shared = new SharedArrayBuffer(4)
    this.flag = new Int32Array(shared)
    const { port1, port2 } = new MessageChannel()
    const notify = new MessageChannel()
    this.port = port1
    this.notify = notify.port1
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { pg: createRequire(import.meta.url).resolve('pg'), url: opts.connectionString, schema: opts.schema, connectTimeoutMs: opts.connectTimeoutMs ?? 10_000, flag: shared, port: port2, notify: notify.port2 },
      transferList: [port2, notify.port2]
    })
    this.worker.unref()
    this.port.unref()
  }

  /** Runs one statement (or several, without parameters) on connection `conn`; throws PgCallError. */
  query (conn: Conn, sql: string, params: unknown[] = []): QueryResult {
    if (this.closed) throw new PgCallError('the state store is closed', 'CLOSED')
    Atomics.store(this.flag, 0, 0)
    this.port.postMessage({ op: 'query', conn, sql, params })
    return this.answer()
  }

  /**
   * LISTENs on `channel` (a quoted identifier) on a connection of its own and calls `fn` with each
   * notification's payload, asynchronously, until close(). While listening the process stays alive.
   */
  listen (channel: string, fn: (payload: string) => void): void {
    if (this.closed) throw new PgCallError('the state store is closed', 'CLOSED')
    this.notify.on('message', (payload: string) => { fn(payload) })
    Atomics.store(this.flag, 0, 0)
    this.port.postMessage({ op: 'listen', channel })
    this.answer()
  }

  /** Ends both connections (the server releases the session's advisory locks) and the worker. */
  close (): void {
    if (this.closed) return
    try {
      Atomics.store(this.flag, 0, 0)
      this.port.postMessage({ op: 'close' })
      this.answer(5000)
    } catch { /* ending anyway */ }
    this.closed = true
    this.port.close()
    this.notify.close()
    void this.worker.terminate()
  }

  private answer (timeoutMs = this.callTimeoutMs): QueryResult {
    if (Atomics.wait(this.flag, 0, 0, timeoutMs) === 'timed-out') throw new PgCallError(`no answer from the state worker in ${timeoutMs} ms`, 'ETIMEDOUT')
    const m = receiveMessageOnPort(this.port)?.message as { ok: boolean, rows?: QueryResult['rows'], rowCount?: number, error?: { message: string, code?: string } } | undefined
    if (m === undefined) throw new PgCallError('the state worker answered nothing', 'EPROTO')
    if (!m.ok) throw new PgCallError(m.error?.message ?? 'unknown error', m.error?.code)
    return { rows: m.rows ?? [], rowCount: m.rowCount ?? 0 }
  }
}
