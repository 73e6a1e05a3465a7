/**
 * The HTTP + WebSocket server of `supercloud serve`.
 *
 *   GET  /                      the dashboard (static, built at start)
 *   GET  /api/status            Controller.status()
 *   GET  /api/info              schema version, event bounds, sites
 *   POST /api/events            publish one event (validated like an agent's push)
 *   GET  /metrics               Prometheus text
 *   GET  /api/operations        running operations (up, down, migrate) from any terminal
 *   POST /api/operations/<id>/cancel   ask one to stop (as `supercloud cancel`)
 *   WS   /api/events?since=N&vm=X&host=H&type=T   events, resumable (docs/events.md)
 *   WS   /api/console/<vm>      the guest's serial console, raw bytes both ways
 *
 * Every request needs the token: `Authorization: Bearer <token>`, `?token=<token>`, or the
 * `sc_token` cookie the dashboard page sets. A bad or missing token gets HTTP 401, or on a
 * WebSocket a close with code 4401 and the reason. A POST or a WebSocket from a page of another
 * origin gets HTTP 403; the dashboard's page carries a Content-Security-Policy.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocketServer, WebSocket, type RawData } from 'ws'
import type { StatusReport } from '../controller/index.ts'
import { SupercloudError } from '../../core/errors.ts'
import { EventRejectedError, type EventHub, type Subscription, type SubscriptionItem } from '../events/hub.ts'
import type { LiveModel } from '../events/model.ts'
import { EVENT_SCHEMA_VERSION } from '../events/schema.ts'
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.ts'
import { tokenMatches } from './token.ts'
import type { OperationRow } from '../state/store.ts'

/** WebSocket close codes this server uses (4000-4999 are the application's). */
export const WS_CLOSE = {
  /** Missing or bad token. */
  unauthorized: 4401,
  /** Malformed query (e.g. `since` not a number). */
  badRequest: 4400,
  /** No such VM (console). */
  notFound: 4404,
  /** The subscriber did not read fast enough; it must re-read state and resume. */
  slowConsumer: 4429,
  /** The console could not be opened or broke. */
  consoleError: 4500,
  /** The server is shutting down. */
  goingAway: 1001
} as const

/** A static file of the dashboard. */
export interface Asset { type: string, body: Buffer | string }

export interface ServerOptions {
  hub: EventHub
  token: string
  /** Address to listen on (default 127.0.0.1). */
  host?: string
  /** Port (default 0: any free one). */
  port?: number
  status: () => Promise<StatusReport>
  /** The latest status the poller saw, for /metrics without touching hosts. */
  cachedStatus?: () => StatusReport | undefined
  model: LiveModel
  openConsole?: (vm: string) => Promise<Duplex>
  sites?: () => Record<string, unknown>
  /** Dashboard files by path ('/' is index.html). */
  assets?: Map<string, Asset>
  /** Operations in the supercloud's state (blanket-manager/operations). */
  operations?: {
    running: () => OperationRow[]
    /** Marks a cancel request; false when no such operation runs. */
    cancel: (id: string, by: string) => boolean
  }
  /** Bytes buffered on an events socket above which the server stops taking from the subscription. */
  highWaterBytes?: number
  /** Live events a subscriber may have queued before it is disconnected (default: the hub's). */
  queueLimit?: number
}

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:7878 */
  url: string
  host: string
  port: number
  connections: () => { events: number, console: number }
  close: () => Promise<void>
}

const COOKIE = 'sc_token'

function presentedToken (req: IncomingMessage, url: URL): string | undefined {
  const auth = req.headers.authorization
  if (auth !== undefined && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim()
  const q = url.searchParams.get('token')
  if (q !== null) return q
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=')
    if (k === COOKIE) return decodeURIComponent(v.join('='))
  }
  return undefined
}

function sendJson (res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(text)
}

function errorBody (err: unknown): { code: string, message: string } {
  if (err instanceof SupercloudError) return { code: err.code, message: err.message }
  return { code: 'SC_INTERNAL', message: (err as Error).message ?? String(err) }
}

async function readBody (req: IncomingMessage, max: number): Promise<string> {
  let size = 0
  const chunks: Buffer[] = []
  for await (const c of req) {
    const b = c as Buffer
    size += b.length
    if (size > max) throw new SupercloudError('SC_REQUEST_TOO_LARGE', `request body larger than ${max} bytes`)
    chunks.push(b)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** A close reason fits in a control frame (123 bytes). */
function closeReason (s: string): string {
  const b = Buffer.from(s)
  return b.length <= 123 ? s : b.subarray(0, 120).toString('utf8').replace(/\uFFFD+$/, '') + '...'
}

/** Whether a request comes from this server's own pages: no Origin (not a browser page), or exactly this origin. */
export function sameOrigin (req: IncomingMessage): boolean {
  const origin = req.headers.origin
  return origin === undefined || origin === `http://${req.headers.host ?? ''}`
}

/**
 * The dashboard's Content-Security-Policy: its own scripts only (no inline or injected script),
 * fetch and WebSockets to this server only, no framing, no plugins. Inline styles stay allowed:
 * xterm.js styles its terminal with a <style> element.
 */
export function contentSecurityPolicy (req: IncomingMessage): string {
  const host = req.headers.host ?? ''
  const ws = /^[A-Za-z0-9.:[\]-]+$/.test(host) ? ` ws://${host}` : ''
  return [
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'", "img-src 'self' data:", `connect-src 'self'${ws}`,
    "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"
  ].join('; ')
}

export async function startServer (opts: ServerOptions): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1'
  const highWater = opts.highWaterBytes ?? 1024 * 1024
  const conns = { events: new Set<WebSocket>(), console: new Set<WebSocket>() }

  const http = createServer((req, res) => { void handle(req, res) })
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 })

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const token = presentedToken(req, url)
    if (!tokenMatches(token, opts.token)) {
      res.writeHead(401, { 'content-type': 'text/plain; charset=utf-8', 'www-authenticate': 'Bearer realm="supercloud"' })
      res.end(token === undefined ? 'unauthorized: a token is required (see `supercloud serve` output)\n' : 'unauthorized: bad token\n')
      return
    }
    // A page on another origin (another port on 127.0.0.1 counts as same-site for the cookie) may not POST here.
    if (req.method !== 'GET' && req.method !== 'HEAD' && !sameOrigin(req)) {
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' })
      res.end(`forbidden: requests from origin ${req.headers.origin ?? ''} are not accepted\n`)
      return
    }
    try {
      const path = url.pathname
      if (req.method === 'GET' && path === '/api/status') return sendJson(res, 200, await opts.status())
      if (req.method === 'GET' && path === '/api/info') {
        return sendJson(res, 200, { schema: EVENT_SCHEMA_VERSION, ...opts.hub.bounds(), sites: opts.sites?.() ?? {} })
      }
      if (req.method === 'POST' && path === '/api/events') {
        let raw: unknown
        try { raw = JSON.parse(await readBody(req, 64 * 1024)) } catch (err) {
          return sendJson(res, 400, err instanceof SupercloudError ? errorBody(err) : { code: 'SC_EVENT_INVALID', message: 'body is not JSON' })
        }
        try {
          return sendJson(res, 201, opts.hub.ingest(raw, 'HTTP publisher'))
        } catch (err) {
          if (err instanceof EventRejectedError) return sendJson(res, 400, { ...errorBody(err), issues: err.issues })
          throw err
        }
      }
      if (opts.operations !== undefined && req.method === 'GET' && path === '/api/operations') return sendJson(res, 200, opts.operations.running())
      const cancel = /^\/api\/operations\/([0-9a-f]{8})\/cancel$/.exec(path)
      if (opts.operations !== undefined && req.method === 'POST' && cancel !== null) {
        const id = cancel[1] as string
        if (!opts.operations.cancel(id, 'dashboard')) return sendJson(res, 409, { code: 'SC_OPERATION_ENDED', message: `operation ${id} is not running` })
        return sendJson(res, 202, { operation: id, cancel: 'requested' })
      }
      if (req.method === 'GET' && path === '/metrics') {
        const text = renderMetrics({ status: opts.cachedStatus?.(), model: opts.model, hub: opts.hub.stats(), connections: { events: conns.events.size, console: conns.console.size } })
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'cache-control': 'no-store' })
        res.end(text)
        return
      }
      if (req.method === 'GET' && opts.assets !== undefined) {
        const asset = opts.assets.get(path === '/' ? '/index.html' : path)
        if (asset !== undefined) {
          const headers: Record<string, string> = { 'content-type': asset.type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': contentSecurityPolicy(req), 'x-frame-options': 'DENY', 'referrer-policy': 'no-referrer' }
          // The page was opened with ?token=: later requests (scripts, fetch, WebSockets) carry the cookie.
          if (url.searchParams.has('token')) headers['set-cookie'] = `${COOKIE}=${encodeURIComponent(opts.token)}; HttpOnly; SameSite=Strict; Path=/`
          res.writeHead(200, headers)
          res.end(asset.body)
          return
        }
      }
      sendJson(res, 404, { code: 'SC_NOT_FOUND', message: `no ${req.method ?? 'GET'} ${path}` })
    } catch (err) {
      const code = err instanceof SupercloudError && err.code === 'SC_NOT_FOUND' ? 404 : 500
      if (!res.headersSent) sendJson(res, code, errorBody(err))
      else res.destroy()
    }
  }

  http.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    // A browser page of another origin may not open the event stream or a console with the cookie.
    if (!sameOrigin(req)) {
      socket.on('error', () => {})
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\r\nforbidden: WebSocket from origin ${String(req.headers.origin).replace(/[\r\n]/g, '')} is not accepted\n`)
      return
    }
    wss.handleUpgrade(req, socket, head, ws => {
      if (!tokenMatches(presentedToken(req, url), opts.token)) {
        ws.close(WS_CLOSE.unauthorized, presentedToken(req, url) === undefined ? 'unauthorized: token required' : 'unauthorized: bad token')
        return
      }
      if (url.pathname === '/api/events') { serveEvents(ws, url); return }
      const m = /^\/api\/console\/([^/]+)$/.exec(url.pathname)
      if (m !== null) { void serveConsole(ws, decodeURIComponent(m[1] ?? '')); return }
      ws.close(WS_CLOSE.notFound, `no WebSocket endpoint ${url.pathname}`)
    })
  })

  function serveEvents (ws: WebSocket, url: URL): void {
    const q = url.searchParams
    const sinceText = q.get('since')
    const since = sinceText === null || sinceText === '' ? undefined : Number(sinceText)
    if (since !== undefined && (!Number.isInteger(since) || since < 0)) {
      ws.close(WS_CLOSE.badRequest, 'since must be a non-negative integer sequence number')
      return
    }
    let sub: Subscription
    try {
      sub = opts.hub.subscribe({
        ...(since !== undefined ? { since } : {}),
        ...(q.get('vm') !== null ? { vm: q.get('vm') ?? '' } : {}),
        ...(q.get('host') !== null ? { host: q.get('host') ?? '' } : {}),
        ...(q.getAll('type').length > 0 ? { types: q.getAll('type').flatMap(t => t.split(',')).filter(t => t !== '') } : {}),
        ...(opts.queueLimit !== undefined ? { queueLimit: opts.queueLimit } : {})
      })
    } catch (err) {
      ws.close(WS_CLOSE.goingAway, closeReason(errorBody(err).message))
      return
    }
    conns.events.add(ws)
    const bounds = opts.hub.bounds()
    ws.send(JSON.stringify({ kind: 'hello', schema: EVENT_SCHEMA_VERSION, head: bounds.head, oldest: bounds.oldest, since: since ?? bounds.head }))
    let caughtUp = false
    let waiting = false
    let draining = false

    const frame = (i: SubscriptionItem): string => JSON.stringify(i.kind === 'event' ? { kind: 'event', event: i.event } : i)
    // Each frame's callback runs once it left the process; when the socket was backed up,
    // taking from the subscription resumes after the buffer drained to half the mark.
    const send = (text: string): void => {
      ws.send(text, () => {
        if (draining && ws.bufferedAmount < highWater / 2) { draining = false; pump() }
      })
    }
    const pump = (): void => {
      if (ws.readyState !== WebSocket.OPEN || waiting || draining) return
      while (ws.bufferedAmount < highWater) {
        const items = sub.takeReady(64)
        if (items.length === 0) {
          if (sub.closeReason !== undefined) return
          if (!caughtUp && sub.live) { caughtUp = true; send(JSON.stringify({ kind: 'caught-up', seq: sub.cursor })) }
          waiting = true
          void sub.next().then(item => {
            waiting = false
            if (item === undefined || ws.readyState !== WebSocket.OPEN) return
            send(frame(item))
            pump()
          })
          return
        }
        for (const i of items) send(frame(i))
      }
      draining = true
    }
    sub.onClose(r => {
      if (r.kind === 'slow') {
        // After the event a pending next() already took went out (it is in the reported lastSeq).
        setImmediate(() => {
          if (ws.readyState !== WebSocket.OPEN) return
          ws.send(JSON.stringify({ kind: 'error', code: r.error.code, message: r.error.message, lastSeq: r.error.lastSeq }))
          ws.close(WS_CLOSE.slowConsumer, closeReason(`slow consumer: fell more than ${opts.queueLimit ?? opts.hub.queueLimit} events behind; re-read state, resume from your last seq`))
        })
      } else if (r.kind === 'hub-closed' && ws.readyState === WebSocket.OPEN) ws.close(WS_CLOSE.goingAway, 'server shutting down')
    })
    ws.on('close', () => { conns.events.delete(ws); sub.close() })
    ws.on('error', () => { sub.close() })
    ws.on('message', () => { /* clients send nothing; ignored */ })
    pump()
  }

  async function serveConsole (ws: WebSocket, vm: string): Promise<void> {
    if (opts.openConsole === undefined) { ws.close(WS_CLOSE.notFound, 'this server has no consoles'); return }
    conns.console.add(ws)
    ws.on('close', () => conns.console.delete(ws))
    const early: RawData[] = []
    const onEarly = (d: RawData): void => { early.push(d) }
    ws.on('message', onEarly)
    let stream: Duplex
    try {
      stream = await opts.openConsole(vm)
    } catch (err) {
      const e = errorBody(err)
      if (ws.readyState === WebSocket.OPEN) ws.close(e.code === 'SC_NOT_FOUND' ? WS_CLOSE.notFound : WS_CLOSE.consoleError, closeReason(e.message))
      return
    }
    ws.off('message', onEarly)
    if (ws.readyState !== WebSocket.OPEN) { stream.destroy(); return }
    const toGuest = (d: RawData): void => {
      const buf = Array.isArray(d) ? Buffer.concat(d) : Buffer.isBuffer(d) ? d : Buffer.from(d)
      stream.write(buf)
    }
    for (const d of early) toGuest(d)
    ws.on('message', toGuest)
    stream.on('data', (d: Buffer) => {
      ws.send(d, { binary: true })
      if (ws.bufferedAmount > highWater) { stream.pause(); ws.send(Buffer.alloc(0), { binary: true }, () => stream.resume()) }
    })
    stream.on('close', () => { if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'console closed') })
    stream.on('error', err => { if (ws.readyState === WebSocket.OPEN) ws.close(WS_CLOSE.consoleError, closeReason(`console: ${err.message}`)) })
    ws.on('close', () => { stream.end(); stream.destroy() })
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(opts.port ?? 0, host, () => { http.off('error', reject); resolve() })
  })
  const addr = http.address() as AddressInfo
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  return {
    url: `http://${urlHost}:${addr.port}`,
    host: addr.address,
    port: addr.port,
    connections: () => ({ events: conns.events.size, console: conns.console.size }),
    close: async () => {
      for (const ws of [...conns.events, ...conns.console]) ws.close(WS_CLOSE.goingAway, 'server shutting down')
      await new Promise<void>(resolve => setTimeout(resolve, 50).unref())
      for (const ws of wss.clients) ws.terminate()
      wss.close()
      http.closeAllConnections()
      await new Promise<void>(resolve => http.close(() => resolve()))
    }
  }
}
