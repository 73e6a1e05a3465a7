/**
 * QmpClient against a small real unix-socket server started here that speaks
 * QMP's wire format (greeting, one JSON object per CRLF-ended line, ids echoed).
 */
import t, { type Test } from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CancelledError, QmpError } from '../../../core/errors.ts'
import { QmpCommandError } from '../../../drivers/qemu/errors.ts'
import { LineSplitter, QmpClient, withQmp } from '../../../drivers/qemu/qmp.ts'

interface Cmd { execute: string, arguments?: Record<string, unknown>, id?: number }
type Handler = (cmd: Cmd, conn: Conn) => void

class Conn {
  constructor (readonly sock: Socket) {}
  send (obj: unknown): void { this.sock.write(JSON.stringify(obj) + '\r\n') }
  /** Writes the text one byte at a time, each on its own tick. */
  async trickle (text: string): Promise<void> {
    for (const ch of text) {
      this.sock.write(ch)
      await new Promise(resolve => setTimeout(resolve, 1))
    }
  }
  reply (cmd: Cmd, ret: unknown = {}): void { this.send({ return: ret, id: cmd.id }) }
}

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'test' }, capabilities: ['oob'] } }

const dir = await mkdtemp(join(tmpdir(), 'sctqmp-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
let n = 0

/** Starts a QMP-speaking server; `handler` sees every command except qmp_capabilities (answered here). */
async function server (t: Test, handler: Handler, opts: { greeting?: boolean, capabilities?: boolean } = {}): Promise<{ path: string, received: Cmd[], srv: Server }> {
  const path = join(dir, `s${n++}.sock`)
  const received: Cmd[] = []
  const sockets = new Set<Socket>()
  const srv = createServer(sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    const conn = new Conn(sock)
    if (opts.greeting !== false) conn.send(GREETING)
    const split = new LineSplitter()
    sock.setEncoding('utf8')
    sock.on('data', (chunk: string) => {
      for (const line of split.push(chunk)) {
        const cmd = JSON.parse(line) as Cmd
        received.push(cmd)
        if (cmd.execute === 'qmp_capabilities' && opts.capabilities !== false) conn.reply(cmd)
        else handler(cmd, conn)
      }
    })
  })
  await new Promise<void>(resolve => srv.listen(path, resolve))
  t.teardown(() => new Promise<void>(resolve => { for (const s of sockets) s.destroy(); srv.close(() => resolve()) }))
  return { path, received, srv }
}

t.test('LineSplitter keeps partial lines and strips CR', async t => {
  const s = new LineSplitter()
  t.same(s.push('{"a":1}\r\n{"b"'), ['{"a":1}'])
  t.equal(s.pending, '{"b"')
  t.same(s.push(':2}\r'), [])
  t.same(s.push('\n\r\n{"c":3}\n'), ['{"b":2}', '{"c":3}'])
  t.equal(s.pending, '')
})

t.test('connect reads the greeting, negotiates capabilities, and executes commands', async t => {
  const { path, received } = await server(t, (cmd, c) => {
    if (cmd.execute === 'query-status') c.reply(cmd, { status: 'running', running: true })
    else if (cmd.execute === 'echo') c.reply(cmd, cmd.arguments)
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  t.equal(q.greeting.version.qemu.major, 7)
  t.equal(received[0]?.execute, 'qmp_capabilities', 'capabilities negotiated first')
  t.same(await q.execute('query-status'), { status: 'running', running: true })
  t.same(await q.execute('echo', { value: 42, s: 'x' }), { value: 42, s: 'x' })
  t.notOk('arguments' in (received[1] ?? {}), 'no arguments key when none given')
  await q.close()
  t.ok(q.closed)
  await t.rejects(q.execute('query-status'), QmpError, 'closed client rejects')
})

t.test('answers trickled byte by byte and several answers in one write are framed correctly', async t => {
  const { path } = await server(t, (cmd, c) => {
    if (cmd.execute === 'slow') void c.trickle(JSON.stringify({ return: { text: 'a\nb "quoted" ü' }, id: cmd.id }) + '\r\n')
    if (cmd.execute === 'pair') {
      // Answer this and pretend an event and a second line arrive in the same write.
      c.sock.write(JSON.stringify({ event: 'X', data: {} }) + '\r\n' + JSON.stringify({ return: 1, id: cmd.id }) + '\r\n')
    }
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  t.same(await q.execute('slow'), { text: 'a\nb "quoted" ü' })
  const [a, b] = await Promise.all([q.execute('pair'), q.execute('pair')])
  t.equal(a, 1)
  t.equal(b, 1)
})

t.test('greeting, an event and a partial line in a single write', async t => {
  const path = join(dir, `s${n++}.sock`)
  const srv = createServer(sock => {
    sock.on('error', () => {})
    sock.write(JSON.stringify(GREETING) + '\r\n' + JSON.stringify({ event: 'EARLY' }) + '\r\n{"event":"PAR')
    const split = new LineSplitter()
    sock.setEncoding('utf8')
    sock.on('data', (chunk: string) => {
      for (const line of split.push(chunk)) {
        const cmd = JSON.parse(line) as Cmd
        // The partial line is completed first (QEMU never interleaves inside a line), then the answer.
        if (cmd.execute === 'qmp_capabilities') sock.write('TIAL"}\r\n')
        sock.write(JSON.stringify({ return: cmd.execute, id: cmd.id }) + '\r\n')
      }
    })
  })
  await new Promise<void>(resolve => srv.listen(path, resolve))
  t.teardown(() => new Promise<void>(resolve => srv.close(() => resolve())))
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  t.equal(await q.execute('after'), 'after', 'the line split across the greeting hand-over parsed fine')
  t.notOk(q.closed)
})

t.test('answers are matched by id, not by order', async t => {
  let held: { cmd: Cmd, c: Conn } | undefined
  const { path } = await server(t, (cmd, c) => {
    if (cmd.execute === 'first') held = { cmd, c }
    if (cmd.execute === 'second') {
      c.reply(cmd, 'two')
      if (held !== undefined) held.c.reply(held.cmd, 'one')
    }
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const order: string[] = []
  const p1 = q.execute<string>('first').then(v => { order.push(v); return v })
  const p2 = q.execute<string>('second').then(v => { order.push(v); return v })
  t.same(await Promise.all([p1, p2]), ['one', 'two'])
  t.same(order, ['two', 'one'], 'second resolved before first')
})

t.test('an error answer rejects with QmpCommandError carrying class and desc', async t => {
  const { path } = await server(t, (cmd, c) => {
    c.send({ error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` }, id: cmd.id })
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const err = await q.execute('nope').catch((e: unknown) => e)
  t.ok(err instanceof QmpCommandError)
  t.ok(err instanceof QmpError, 'is a QmpError')
  const e = err as QmpCommandError
  t.equal(e.code, 'SC_QMP')
  t.equal(e.errorClass, 'CommandNotFound')
  t.equal(e.command, 'nope')
  t.match(e.message, /nope failed: CommandNotFound: The command nope has not been found/)
})

t.test('per-command timeout; the late answer is dropped and the connection stays usable', async t => {
  let late: { cmd: Cmd, c: Conn } | undefined
  const { path } = await server(t, (cmd, c) => {
    if (cmd.execute === 'hang') late = { cmd, c }
    if (cmd.execute === 'ping') {
      if (late !== undefined) { late.c.reply(late.cmd, 'late'); late = undefined }
      c.reply(cmd, 'pong')
    }
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const err = await q.execute('hang', undefined, { timeoutMs: 100 }).catch((e: unknown) => e)
  t.ok(err instanceof QmpError)
  t.match((err as Error).message, /hang got no answer within 100 ms/)
  t.equal(await q.execute('ping'), 'pong', 'next command gets its own answer, not the late one')
  t.notOk(q.closed)
})

t.test('abort signal cancels a command', async t => {
  const { path } = await server(t, () => {})
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const ac = new AbortController()
  const p = q.execute('hang', undefined, { signal: ac.signal })
  ac.abort()
  await t.rejects(p, CancelledError)
  const pre = new AbortController()
  pre.abort()
  await t.rejects(q.execute('x', undefined, { signal: pre.signal }), CancelledError)
})

t.test('events: on("event") and waitForEvent with predicate and timeout', async t => {
  const { path } = await server(t, (cmd, c) => {
    if (cmd.execute === 'fire') {
      c.send({ event: 'BALLOON_CHANGE', data: { actual: 300 }, timestamp: { seconds: 1, microseconds: 2 } })
      c.send({ event: 'BALLOON_CHANGE', data: { actual: 100 }, timestamp: { seconds: 1, microseconds: 3 } })
      c.reply(cmd)
    }
  })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const seen: string[] = []
  q.on('event', (ev: { event: string }) => seen.push(ev.event))
  const wait = q.waitForEvent('BALLOON_CHANGE', ev => (ev.data?.actual as number) < 200, 2000)
  await q.execute('fire')
  const ev = await wait
  t.equal(ev.data?.actual, 100, 'predicate skipped the first event')
  t.same(seen, ['BALLOON_CHANGE', 'BALLOON_CHANGE'])
  await t.rejects(q.waitForEvent('SHUTDOWN', undefined, 50), QmpError)
})

t.test('peer closing the connection rejects pending commands and waiters', async t => {
  const { path } = await server(t, (cmd, c) => { if (cmd.execute === 'die') c.sock.destroy() })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const w = q.waitForEvent('SHUTDOWN', undefined, 5000)
  const err = await q.execute('die').catch((e: unknown) => e)
  t.ok(err instanceof QmpError)
  t.match((err as Error).message, /die: QMP connection closed/)
  await t.rejects(w, QmpError)
  t.ok(q.closed)
})

t.test('a non-JSON line is a protocol error', async t => {
  const { path } = await server(t, (cmd, c) => { c.sock.write('this is not json\r\n') })
  const q = await QmpClient.connect(path)
  t.teardown(() => q.destroy())
  const err = await q.execute('x').catch((e: unknown) => e)
  t.ok(err instanceof QmpError)
  t.match((err as Error).message, /not a JSON object: this is not json/)
})

t.test('connect failures are QmpErrors', async t => {
  await t.rejects(QmpClient.connect(join(dir, 'missing.sock'), { timeoutMs: 500 }), { code: 'SC_QMP', message: /cannot connect/ })
  const silent = await server(t, () => {}, { greeting: false })
  await t.rejects(QmpClient.connect(silent.path, { timeoutMs: 200 }), { code: 'SC_QMP', message: /no QMP greeting/ })
  const noCaps = await server(t, () => {}, { capabilities: false })
  await t.rejects(QmpClient.connect(noCaps.path, { timeoutMs: 200 }), { code: 'SC_QMP', message: /qmp_capabilities/ })
})

t.test('withQmp closes the connection even when the callback throws', async t => {
  let closed = 0
  const { path, srv } = await server(t, (cmd, c) => c.reply(cmd, 'ok'))
  srv.on('connection', s => s.on('close', () => closed++))
  t.equal(await withQmp(path, q => q.execute<string>('x')), 'ok')
  await t.rejects(withQmp(path, async () => { throw new Error('boom') }), /boom/)
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(closed, 2)
})
