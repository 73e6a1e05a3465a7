/**
 * `supercloud serve`'s server for real: runServe on a real (empty) supercloud's state in a temp
 * dir, listening on 127.0.0.1 port 0, talked to with real HTTP and WebSocket clients.
 */
import t from 'tap'
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { createController } from '../../../blanket-manager/controller/index.ts'
import { AgentClient } from '../../../blanket-manager/agent/client.ts'
import { EventHub, ingestAgentEvents } from '../../../blanket-manager/events/hub.ts'
import type { EventInput, SupercloudEvent } from '../../../blanket-manager/events/schema.ts'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { runServe, type Serving } from '../../../blanket-manager/server/serve.ts'
import { readServeInfo } from '../../../blanket-manager/server/token.ts'

const root = mkdtempSync(join(tmpdir(), 'sc-serve-'))
const env = { ...process.env, SUPERCLOUD_STATE_DIR: join(root, 'state') }
const c = createController('sct-serve', { env })
let s: Serving
t.before(async () => {
  s = await runServe(c, { port: 0, pollMs: 0, followMs: 50, queueLimit: 200, highWaterBytes: 16 * 1024 })
})
t.teardown(async () => {
  await s?.stop()
  c.close()
  rmSync(root, { recursive: true, force: true })
})

const stats = (vm: string, i: number): EventInput => ({ type: 'vm.stats', host: 'host-a', vm, data: { residentBytes: i, balloonBytes: 2, pagingRate: i } })

interface Frame { kind: string, event?: SupercloudEvent, [k: string]: unknown }

/** A WebSocket client that records frames and how it was closed. */
function client (path: string, token: string | null = s.token): { ws: WebSocket, frames: Frame[], closed: Promise<{ code: number, reason: string }>, until: (pred: (f: Frame[]) => boolean) => Promise<void> } {
  const url = s.server.url.replace(/^http/, 'ws') + path + (token === null ? '' : `${path.includes('?') ? '&' : '?'}token=${token}`)
  const ws = new WebSocket(url)
  const frames: Frame[] = []
  const waiters: Array<() => void> = []
  ws.on('message', d => { frames.push(JSON.parse(d.toString()) as Frame); for (const w of waiters) w() })
  const closed = new Promise<{ code: number, reason: string }>(resolve => ws.on('close', (code, reason) => { for (const w of waiters) w(); resolve({ code, reason: reason.toString() }) }))
  ws.on('error', () => {})
  const until = async (pred: (f: Frame[]) => boolean): Promise<void> => {
    while (!pred(frames)) {
      if (ws.readyState === WebSocket.CLOSED) throw new Error(`closed before the condition held; frames: ${JSON.stringify(frames.slice(-3))}`)
      await new Promise<void>(resolve => waiters.push(resolve))
    }
  }
  return { ws, frames, closed, until }
}
const eventSeqs = (f: Frame[]): number[] => f.filter(x => x.kind === 'event').map(x => x.event?.seq ?? -1)

t.test('serve writes its address for other commands and keeps its token in the supercloud dir', async t => {
  const info = readServeInfo(c.dir)
  t.equal(info?.url, s.server.url)
  t.equal(info?.pid, process.pid)
  t.equal(readFileSync(join(c.dir, 'serve-token'), 'utf8').trim(), s.token)
  t.match(s.server.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'listens on loopback by default')
  t.match(s.dashboardUrl, new RegExp(`\\?token=${s.token}$`))
})

t.test('a missing or bad token is refused: HTTP 401 and WebSocket close 4401', async t => {
  for (const path of ['/api/status', '/metrics', '/', '/app.js']) {
    const none = await fetch(s.server.url + path)
    t.equal(none.status, 401, `${path} without token`)
    t.match(await none.text(), /token is required/)
    const bad = await fetch(s.server.url + path, { headers: { authorization: 'Bearer nope' } })
    t.equal(bad.status, 401, `${path} with a bad token`)
  }
  for (const tok of [null, 'x'.repeat(64)]) {
    const cl = client('/api/events', tok)
    const r = await cl.closed
    t.equal(r.code, 4401)
    t.match(r.reason, /unauthorized/)
    t.same(cl.frames, [], 'no event leaked')
  }
  const cons = client('/api/console/web1', 'bad')
  t.equal((await cons.closed).code, 4401)
})

t.test('status, info and the dashboard with a token', async t => {
  const st = await fetch(s.server.url + '/api/status', { headers: { authorization: `Bearer ${s.token}` } })
  t.equal(st.status, 200)
  const body = await st.json() as { name: string, hosts: unknown[] }
  t.equal(body.name, 'sct-serve')
  t.same(body.hosts, [])
  const page = await fetch(`${s.server.url}/?token=${s.token}`)
  t.equal(page.status, 200)
  t.match(await page.text(), /<script type="module" src="\/app.js">/)
  const cookie = page.headers.get('set-cookie') ?? ''
  t.match(cookie, /sc_token=.*HttpOnly; SameSite=Strict/)
  const js = await fetch(`${s.server.url}/app.js`, { headers: { cookie: cookie.split(';')[0] ?? '' } })
  t.equal(js.status, 200, 'the page\'s assets load with the cookie it set')
  t.match(await js.text(), /LiveModel/)
})

t.test('events arrive in order; a client resumes from a sequence number', async t => {
  const base = s.hub.bounds().head
  s.hub.publishMany(Array.from({ length: 20 }, (_, i) => stats('web1', i)))
  const a = client(`/api/events?since=${base}`)
  await a.until(f => f.some(x => x.kind === 'caught-up'))
  t.equal(a.frames[0]?.kind, 'hello')
  t.same(eventSeqs(a.frames), Array.from({ length: 20 }, (_, i) => base + 1 + i), 'replayed in order')
  for (let i = 0; i < 5; i++) s.hub.publish(stats('web1', 100 + i))
  await a.until(f => eventSeqs(f).length === 25)
  t.same(eventSeqs(a.frames), Array.from({ length: 25 }, (_, i) => base + 1 + i), 'then live, no gap, no duplicate')
  a.ws.close()

  const b = client(`/api/events?since=${base + 22}`)
  await b.until(f => f.some(x => x.kind === 'caught-up'))
  t.same(eventSeqs(b.frames), [base + 23, base + 24, base + 25], 'resume from seq')

  const vmOnly = client(`/api/events?since=${base}&vm=other`)
  s.hub.publish(stats('other', 1))
  await vmOnly.until(f => eventSeqs(f).length === 1)
  t.equal(vmOnly.frames.find(f => f.kind === 'event')?.event?.vm, 'other', 'filtered by vm')
  b.ws.close()
  vmOnly.ws.close()

  const bad = client('/api/events?since=minus-one')
  t.equal((await bad.closed).code, 4400)
})

t.test('events another process stores (supercloud up, Overdriver) reach WebSocket clients', async t => {
  const cl = client('/api/events')
  await cl.until(f => f.some(x => x.kind === 'caught-up'))
  const other = StateStore.open(c.dir)
  const hub = new EventHub(other)
  hub.publish({ type: 'host.ready', host: 'host-z', data: { accel: 'tcg' } })
  await cl.until(f => eventSeqs(f).length === 1)
  t.equal(cl.frames.find(f => f.kind === 'event')?.event?.type, 'host.ready')
  hub.close()
  other.close()
  cl.ws.close()
})

t.test('an agent\'s pushes over its channel are validated and published', async t => {
  const sock = join(root, 'agent.sock')
  const peers: Socket[] = []
  const fake = createServer(p => { peers.push(p) })
  await new Promise<void>(resolve => fake.listen(sock, resolve))
  const conn = connect(sock)
  await new Promise<void>(resolve => conn.once('connect', resolve))
  const dropped: string[] = []
  const agent = new AgentClient('host-q', conn, { log: l => dropped.push(l) })
  const rejected: string[] = []
  ingestAgentEvents(s.hub, agent, e => rejected.push(e.message))
  const cl = client('/api/events')
  await cl.until(f => f.some(x => x.kind === 'caught-up'))
  while (peers.length === 0) await new Promise(resolve => setImmediate(resolve))
  const peer = peers[0]
  peer?.write(JSON.stringify({ event: { type: 'overload.swap', vm: 'web1', ts: new Date().toISOString(), data: { enabled: 'maybe' } } }) + '\n')
  peer?.write(JSON.stringify({ event: { type: 'overload.swap', vm: 'web1', ts: new Date().toISOString(), data: { enabled: true } } }) + '\n')
  await cl.until(f => eventSeqs(f).length === 1)
  const ev = cl.frames.find(f => f.kind === 'event')?.event
  t.equal(ev?.type, 'overload.swap')
  t.equal(ev?.host, 'host-q', 'the agent\'s host is pinned')
  // The client drops a malformed push (and logs why) before it reaches the hub.
  t.equal(agent.dropped, 1, 'the malformed push was dropped by the agent client')
  t.match(dropped[0], /agent on host-q: dropped a malformed message .*data.enabled: must be true or false/)
  t.equal(rejected.length, 0, 'so the hub never saw it')
  t.equal(eventSeqs(cl.frames).length, 1, 'only the valid push was published')
  agent.close()
  peer?.destroy()
  cl.ws.close()
  await new Promise<void>(resolve => fake.close(() => resolve()))
})

t.test('POST /api/events publishes a valid event and refuses a malformed one', async t => {
  const post = async (body: unknown): Promise<Response> => await fetch(s.server.url + '/api/events', { method: 'POST', body: JSON.stringify(body), headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' } })
  const ok = await post({ type: 'overload.started', host: 'host-a', vm: 'web1', data: { pagingRate: 1500, threshold: 800 } })
  t.equal(ok.status, 201)
  const ev = await ok.json() as SupercloudEvent
  t.equal(ev.schema, 1)
  t.ok(ev.seq > 0)
  const bad = await post({ type: 'overload.started', vm: 'web1', data: { pagingRate: 'high' } })
  t.equal(bad.status, 400)
  const err = await bad.json() as { code: string, issues: string[] }
  t.equal(err.code, 'SC_EVENT_INVALID')
  t.match(err.issues.join('\n'), /data.pagingRate: must be a finite number/)
  t.match(err.issues.join('\n'), /data.threshold: required/)
})

t.test('a client that stops reading is disconnected with a reason, after every event it was sent', async t => {
  const cl = client('/api/events')
  await cl.until(f => f.some(x => x.kind === 'caught-up'))
  const start = s.hub.bounds().head
  const slowBefore = s.hub.stats().slowDisconnects
  const fast = client('/api/events')
  await fast.until(f => f.some(x => x.kind === 'caught-up'))
  cl.ws.pause() // stops reading its socket: the server's buffers fill up
  let batches = 0
  while (s.hub.stats().slowDisconnects === slowBefore && batches < 2000) {
    s.hub.publishMany(Array.from({ length: 50 }, (_, i) => stats('web1', i)))
    batches++
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  t.ok(batches < 2000, `the slow client was detected (after ${batches} batches of 50)`)
  cl.ws.resume()
  const closed = await cl.closed
  t.equal(closed.code, 4429)
  t.match(closed.reason, /slow consumer.*resume from your last seq/)
  const last = cl.frames[cl.frames.length - 1]
  t.equal(last?.kind, 'error')
  t.equal(last?.code, 'SC_EVENTS_SLOW_CONSUMER')
  const got = eventSeqs(cl.frames)
  t.ok(got.length > 0)
  t.same(got, Array.from({ length: got.length }, (_, i) => start + 1 + i), 'what it got is contiguous from where it started: nothing silently skipped')
  t.equal(last?.lastSeq, got[got.length - 1], 'the error names the last seq the client received')
  // It resumes from the last seq it saw and gets the rest.
  const head = s.hub.bounds().head
  const again = client(`/api/events?since=${got[got.length - 1] ?? start}`)
  await again.until(f => f.some(x => x.kind === 'caught-up'))
  const rest = eventSeqs(again.frames)
  t.equal(rest[0], (got[got.length - 1] ?? start) + 1)
  t.equal(rest[rest.length - 1], head)
  again.ws.close()
  // The client that kept reading was not disconnected.
  await fast.until(f => eventSeqs(f).length >= head - start)
  t.equal(fast.ws.readyState, WebSocket.OPEN)
  fast.ws.close()
})

t.test('/metrics is valid Prometheus text with the figures', async t => {
  s.hub.publish({ type: 'vm.stats', host: 'host-a', vm: 'web9', data: { residentBytes: 123456, balloonBytes: 654321, pagingRate: 42, requestedBytes: 1 << 27, allocatedBytes: 1 << 26 } })
  const r = await fetch(s.server.url + '/metrics', { headers: { authorization: `Bearer ${s.token}` } })
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  const text = await r.text()
  const families = new Map<string, string>()
  const sampleRe = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (-?[0-9.e+]+|NaN|\+Inf|-Inf)$/
  for (const line of text.split('\n')) {
    if (line === '') continue
    const type = /^# TYPE (\S+) (gauge|counter)$/.exec(line)
    if (type !== null) { families.set(type[1] ?? '', type[2] ?? ''); continue }
    if (line.startsWith('# HELP ')) continue
    const m = sampleRe.exec(line)
    t.ok(m, `sample line parses: ${line}`)
    if (m !== null) t.ok(families.has(m[1] ?? ''), `${m[1]} has a TYPE line before it`)
  }
  t.match(text, /^supercloud_vm_memory_resident_bytes\{vm="web9",host="host-a"\} 123456$/m)
  t.match(text, /^supercloud_vm_balloon_bytes\{vm="web9",host="host-a"\} 654321$/m)
  t.match(text, /^supercloud_vm_paging_rate\{vm="web9",host="host-a"\} 42$/m)
  t.match(text, /^supercloud_vm_memory_requested_bytes\{vm="web9",host="host-a"\} 134217728$/m)
  t.match(text, /^supercloud_events_seen_total\{type="vm.stats"\} \d+$/m)
  t.match(text, /^supercloud_events_slow_disconnects_total 1$/m)
})

t.test('a console for an unknown VM is refused with the reason', async t => {
  const cl = client('/api/console/nosuchvm')
  const r = await cl.closed
  t.equal(r.code, 4404)
  t.match(r.reason, /no vm named 'nosuchvm'/)
})

/** A WebSocket upgrade as a browser page on `origin` would send it (the token in the query, as the cookie would carry it); resolves with the HTTP status or 101. */
async function upgradeStatus (path: string, origin: string | undefined): Promise<{ status: number, body: string }> {
  return await new Promise((resolve, reject) => {
    const ws = new WebSocket(`${s.server.url.replace(/^http/, 'ws')}${path}?token=${s.token}`, origin !== undefined ? { origin } : {})
    ws.on('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    ws.on('open', () => { ws.close(); resolve({ status: 101, body: '' }) })
    ws.on('error', err => { if (!/Unexpected server response/.test(err.message)) reject(err) })
  })
}

t.test('a page of another origin: its POSTs and WebSockets get 403, even with the token', async t => {
  const own = s.server.url
  const evil = own.replace(/:(\d+)$/, (_m, p: string) => `:${Number(p) + 1}`)
  const auth = { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }
  const post = await fetch(`${own}/api/operations/0123abcd/cancel`, { method: 'POST', headers: { ...auth, origin: evil } })
  t.equal(post.status, 403, 'cancel POST from another port of 127.0.0.1')
  t.match(await post.text(), /origin .* not accepted/)
  const ev = await fetch(`${own}/api/events`, { method: 'POST', headers: { ...auth, origin: 'http://attacker.example' }, body: JSON.stringify(stats('web1', 1)) })
  t.equal(ev.status, 403, 'event POST from another site')
  const same = await fetch(`${own}/api/operations/0123abcd/cancel`, { method: 'POST', headers: { ...auth, origin: own } })
  t.equal(same.status, 409, 'the same origin gets through (no such operation running)')
  for (const path of ['/api/events', '/api/console/web1']) {
    const cross = await upgradeStatus(path, evil)
    t.equal(cross.status, 403, `${path}: WebSocket from ${evil} refused before the upgrade`)
    t.match(cross.body, /forbidden: WebSocket from origin/)
    t.equal((await upgradeStatus(path, 'null')).status, 403, `${path}: opaque origin (sandboxed page) refused`)
  }
  t.equal((await upgradeStatus('/api/events', own)).status, 101, 'the dashboard\'s own origin upgrades')
  t.equal((await upgradeStatus('/api/events', undefined)).status, 101, 'a client that is no browser page (no Origin) upgrades')
})

t.test('operations: listing and cancelling need the token (401)', async t => {
  const list = await fetch(`${s.server.url}/api/operations`)
  t.equal(list.status, 401, 'GET /api/operations without token')
  const cancel = await fetch(`${s.server.url}/api/operations/0123abcd/cancel`, { method: 'POST', headers: { origin: s.server.url } })
  t.equal(cancel.status, 401, 'POST /api/operations/<id>/cancel without token')
  const bad = await fetch(`${s.server.url}/api/operations/0123abcd/cancel`, { method: 'POST', headers: { authorization: 'Bearer nope' } })
  t.equal(bad.status, 401, 'and with a bad one')
  const ok = await fetch(`${s.server.url}/api/operations`, { headers: { authorization: `Bearer ${s.token}` } })
  t.equal(ok.status, 200)
  t.same(await ok.json(), [], 'with the token: the (empty) list')
})

t.test('the dashboard page carries a Content-Security-Policy: own scripts only, no framing', async t => {
  const page = await fetch(`${s.server.url}/?token=${s.token}`)
  t.equal(page.status, 200)
  const csp = page.headers.get('content-security-policy') ?? ''
  const host = new URL(s.server.url).host
  for (const d of ["script-src 'self'", "default-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", `connect-src 'self' ws://${host}`]) t.ok(csp.split('; ').includes(d), d)
  t.notMatch(csp, /script-src[^;]*unsafe/, 'no inline or eval script')
  t.equal(page.headers.get('x-frame-options'), 'DENY')
  const js = await fetch(`${s.server.url}/app.js?token=${s.token}`)
  t.ok(js.headers.get('content-security-policy'), 'on the assets too')
})

t.test('stop removes serve.json', async t => {
  await s.stop()
  t.notOk(existsSync(join(c.dir, 'serve.json')))
})
