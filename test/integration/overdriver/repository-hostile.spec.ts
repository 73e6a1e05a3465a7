/**
 * The page repository read as an attacker would (issue 14): a repository answering GET with a
 * short page never puts leftover memory into the guest's page (the page comes from the local
 * disk, with a read-fallback event); one answering with a tampered page is caught by the
 * page's checksum in the sector table (also in a table that moved with the VM) and the guest
 * reads its own data; STATS, which lists every VM, needs the admin token; connections are
 * capped, and a peer that does not read its replies cannot make the repository buffer them.
 * Over TLS-PSK (as hosts run it): a client without the repository's key (clear text, TLS
 * without a key, another repository's key, the right identity with a wrong key) fails the
 * handshake and gets no byte of the protocol, with the reason in an event (and the agent's
 * repositoryLog); a repository without the key gets no page; the right client's pages go
 * through and read back intact.
 */
import t from 'tap'
import type { Test } from 'tap'
import { connect, createServer, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { copyFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentOverdriver } from '../../../blanket-manager/agent/overdriver-host.ts'
import { newRepositoryTls, pskConnector, pskListener, type RepositoryConnector } from '../../../overdriver/repository/transport.ts'
import * as P from '../../../overdriver/repository/protocol.ts'
import { HANDSHAKE_ROOM } from '../../../overdriver/repository/server.ts'
import { StreamReader, StreamClosedError } from '../../../overdriver/stream-reader.ts'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import { SwapService } from '../../../overdriver/swap-service.ts'
import { listeningRepository, pattern, poke, prefix, repositoryWithClient, tempDir } from './helpers.ts'

const MiB = 1024 * 1024

/**
 * A repository speaking the protocol that keeps every PUT page and answers GET with what
 * `answer` makes of the stored page (undefined: nothing stored).
 */
async function hostileRepository (answer: (stored: Buffer | undefined, pageId: number) => Buffer): Promise<{ port: number, gets: () => number, close: () => void }> {
  let gets = 0
  const pages = new Map<number, Buffer>()
  const sockets = new Set<Socket>()
  const srv = createServer(socket => {
    sockets.add(socket)
    socket.on('error', () => {})
    const reader = new StreamReader(socket)
    void (async () => {
      for (;;) {
        const h = P.parseRequestHeader(await reader.read(P.REQUEST_HEADER_SIZE))
        if (typeof h === 'string') { socket.destroy(); return }
        const payload = h.length > 0 ? await reader.read(h.length) : Buffer.alloc(0)
        if (h.op === P.OP.PUT) pages.set(h.pageId, Buffer.from(payload))
        if (h.op === P.OP.GET) { gets++; socket.write(P.encodeReply(P.STATUS.OK, h.id, answer(pages.get(h.pageId), h.pageId))) } else socket.write(P.encodeReply(P.STATUS.OK, h.id))
      }
    })().catch((e: unknown) => { if (!(e instanceof StreamClosedError)) socket.destroy() })
  })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const addr = srv.address()
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  return { port: addr.port, gets: () => gets, close: () => { for (const s of sockets) s.destroy(); srv.close() } }
}

/** A repository that takes every PUT and answers every GET with `getBytes` bytes of 0xAA. */
async function shortPageRepository (getBytes: number): Promise<{ port: number, gets: () => number, close: () => void }> {
  return await hostileRepository(() => Buffer.alloc(getBytes, 0xaa))
}

/** The stored page with one bit flipped. */
function flipped (stored: Buffer | undefined): Buffer {
  const b = Buffer.from(stored ?? Buffer.alloc(4096))
  b[1234] = (b[1234] ?? 0) ^ 0x10
  return b
}

/** A swap export of 4 MiB with cooperative swap on, using the repository at `port`, and an NBD client of it (both closed at teardown). */
async function swapUsing (t: Test, name: string, port: number, onEvent: (e: { type: string }) => void, more: { capability?: Buffer, connector?: RepositoryConnector } = {}): Promise<{ svc: SwapService, c: NbdClient }> {
  const dir = tempDir(t, name)
  const svc = await SwapService.start({
    vm: 'web1', diskPath: join(dir, 'swap.img'), sizeBytes: 4 * MiB, listen: { path: join(dir, 'nbd.sock') },
    repositories: [{ address: { host: '127.0.0.1', port }, capability: more.capability ?? Buffer.alloc(16, 7) }], cooperative: true, onEvent,
    ...(more.connector !== undefined ? { connector: more.connector } : {})
  })
  t.teardown(() => svc.stop())
  const c = await NbdClient.connect({ path: join(dir, 'nbd.sock') }, 'swap')
  t.teardown(() => c.close())
  return { svc, c }
}

for (const getBytes of [100, 0, 4095]) {
  t.test(`a repository answering GET with ${getBytes} bytes: the guest reads its own data from the disk, never leftover memory`, async t => {
    const hostile = await shortPageRepository(getBytes)
    t.teardown(() => { hostile.close() })
    const events: Array<{ type: string }> = []
    const { svc, c } = await swapUsing(t, 'hostile', hostile.port, e => { events.push(e) })
    const pages = 32
    await Promise.all(Array.from({ length: pages }, async (_, p) => { await c.write(p * 4096, pattern(p)) }))
    await svc.path.settle()
    t.equal(svc.path.stats().pagesInRepositories, pages, 'the sector table says the repository holds every page')
    let bad = 0
    for (let p = 0; p < pages; p++) if (!(await c.read(p * 4096, 4096)).equals(pattern(p))) bad++
    // A read spanning pages and not page-aligned goes through the same path.
    const span = await c.read(4096 + 10, 2 * 4096)
    t.equal(bad, 0, 'every page reads back as written')
    t.ok(span.equals(Buffer.concat([pattern(1), pattern(2), pattern(3)]).subarray(10, 10 + 2 * 4096)), 'unaligned multi-page read too')
    t.ok(hostile.gets() >= pages, `the repository was asked (${hostile.gets()} GETs)`)
    const fallbacks = events.filter(e => e.type === 'coopswap.read-fallback')
    t.ok(fallbacks.length >= pages, 'each short answer is a read fallback')
    t.match(JSON.stringify(fallbacks[0]), new RegExp(`answered ${getBytes} bytes, not a 4096-byte page`))
    t.equal(svc.path.stats().pagesInRepositories, 0, 'pages it failed to return are no longer counted as there')
  })
}

t.test('STATS needs the admin token: a VM\'s capability cannot list the other VMs', async t => {
  const { repo, port, c } = await repositoryWithClient(t, { capacityPages: 16 })
  const a = await c.issue(repo.adminToken, 'vm-a')
  await c.issue(repo.adminToken, 'vm-b')
  await c.put(a, 1, pattern(1))
  await t.rejects(c.stats(a), { code: 'SC_REPOSITORY', status: 'denied', message: /STATS needs the admin token/ })
  await t.rejects(c.stats(Buffer.alloc(16, 9)), { code: 'SC_REPOSITORY', status: 'denied' }, 'nor can a made-up token')
  t.ok(c.alive, 'the connection stays usable')
  const s = await c.stats(repo.adminToken)
  t.same(s.vms.map(v => v.vm).sort(), ['vm-a', 'vm-b'], 'the admin token gets the list')
})

t.test('a repository answering a tampered page: detected by the checksum, the guest reads its own data from disk, an event names the repository', async t => {
  let tamper = (_p: number): boolean => false
  const hostile = await hostileRepository((stored, p) => tamper(p) ? flipped(stored) : stored ?? Buffer.alloc(0))
  t.teardown(() => { hostile.close() })
  const events: Array<{ type: string, page?: number, address?: string, reason?: string }> = []
  const { svc, c } = await swapUsing(t, 'tamper', hostile.port, e => { events.push(e) })
  const pages = 16
  for (let p = 0; p < pages; p++) await c.write(p * 4096, pattern(p))
  await svc.path.settle()
  t.equal(svc.path.stats().pagesInRepositories, pages)
  for (let p = 0; p < 4; p++) t.ok((await c.read(p * 4096, 4096)).equals(pattern(p)), `page ${p} read back`)
  t.equal(svc.path.stats().repositoryReads, 4, 'intact pages are served by the repository')
  tamper = p => p === 5
  t.ok((await c.read(5 * 4096, 4096)).equals(pattern(5)), 'the tampered page reads as the guest wrote it')
  const corrupt = events.filter(e => e.type === 'coopswap.page-corrupt')
  t.same(corrupt, [{ type: 'coopswap.page-corrupt', address: `127.0.0.1:${hostile.port}`, page: 5 }], 'one page-corrupt event, naming the page and the repository')
  t.match(events.find(e => e.type === 'coopswap.read-fallback')?.reason, /answered page 5 with a wrong checksum/)
  t.match(events.find(e => e.type === 'coopswap.repository-down')?.reason, /wrong checksum/, 'the repository is no longer trusted')
  let bad = 0
  for (let p = 0; p < pages; p++) if (!(await c.read(p * 4096, 4096)).equals(pattern(p))) bad++
  t.equal(bad, 0, 'every page reads back as written, from the disk now')
  t.equal(svc.path.stats().repositoryReads, 4, 'nothing more from that repository')
  t.notOk(svc.path.stats().repositories[0]?.alive, 'marked down')
})

t.test('the checksums move with the sector table: a repository tampering after the migration is caught on the destination', async t => {
  const dir = tempDir(t, 'tamper-moved')
  let tamper = false
  const hostile = await hostileRepository(stored => tamper ? flipped(stored) : stored ?? Buffer.alloc(0))
  t.teardown(() => { hostile.close() })
  const grant = { address: { host: '127.0.0.1', port: hostile.port }, capability: Buffer.alloc(16, 7) }
  const src = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'src.img'), sizeBytes: 4 * MiB, listen: { path: join(dir, 'src.sock') }, repositories: [grant], cooperative: true })
  const c = await NbdClient.connect({ path: join(dir, 'src.sock') }, 'swap')
  const pages = 8
  for (let p = 0; p < pages; p++) await c.write(p * 4096, pattern(p))
  c.close()
  const table = JSON.parse(JSON.stringify(await src.path.exportTable())) as Awaited<ReturnType<typeof src.path.exportTable>>
  await src.stop()
  t.equal(table.entries.length, pages)
  t.equal(Buffer.from(table.sums ?? '', 'base64').length, pages * 8, '8 bytes of checksum per entry in the table that moves')
  // The destination has the mirrored disk and the table (as a migration hands them over).
  copyFileSync(join(dir, 'src.img'), join(dir, 'dst.img'))
  const events: Array<{ type: string, page?: number }> = []
  const dst = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'dst.img'), listen: { path: join(dir, 'dst.sock') }, table, onEvent: e => { events.push(e) } })
  t.teardown(() => dst.stop())
  t.equal(dst.path.stats().pagesInRepositories, pages, 'the destination serves the pages from the repository')
  tamper = true
  const d = await NbdClient.connect({ path: join(dir, 'dst.sock') }, 'swap')
  t.teardown(() => d.close())
  let bad = 0
  for (let p = 0; p < pages; p++) if (!(await d.read(p * 4096, 4096)).equals(pattern(p))) bad++
  t.equal(bad, 0, 'every page reads back as written')
  t.ok(events.some(e => e.type === 'coopswap.page-corrupt' && e.page === 0), 'the tampered page is reported on the destination')
  t.ok(hostile.gets() >= 1, 'the repository was asked')
})

t.test('connections are capped, in all and per peer: one over the cap is refused with the reason, the others keep working', { timeout: 60000 }, async t => {
  const events: Array<{ type: string, reason?: string }> = []
  const { repo, port } = await listeningRepository(t, { capacityPages: 16, maxConnections: 3, maxConnectionsPerPeer: 2, onEvent: e => { events.push(e) } })
  const a = await RepositoryClient.connect({ host: '127.0.0.1', port })
  const b = await RepositoryClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => { a.close(); b.close() })
  await a.ping()
  await b.ping()
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port })
  await t.rejects(c.ping(), { code: 'SC_REPOSITORY', message: /127\.0\.0\.1 has 2 connections to this repository, the limit per peer/ }, 'a third from the same peer is refused, with the reason')
  t.notOk(c.alive)
  t.match(events.find(e => e.type === 'repository.rejected')?.reason, /limit per peer/, 'and reported')
  // Another peer address (127.0.0.2 is loopback too) gets the last slot; then the repository is full.
  const other = await connectFrom('127.0.0.2', port)
  t.teardown(() => other.destroy())
  await new Promise(resolve => setTimeout(resolve, 100))
  const e = await connectFrom('127.0.0.3', port)
  const refused = await new Promise<Buffer>(resolve => { const got: Buffer[] = []; e.on('data', x => got.push(x)); e.on('close', () => resolve(Buffer.concat(got))) })
  t.match(refused.subarray(P.REPLY_HEADER_SIZE).toString(), /repository has 3 connections, its limit/, 'over the total cap: refused with the reason')
  await a.ping()
  t.ok(a.alive && b.alive, 'the connections within the caps are untouched')
  a.close()
  await new Promise(resolve => setTimeout(resolve, 100))
  const f = await RepositoryClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => f.close())
  await f.ping()
  t.pass('a slot freed by a closed connection is taken again')
})

t.test('a peer that sends requests and reads no replies: the repository stops reading its requests instead of buffering replies, then drops it', { timeout: 60000 }, async t => {
  const events: Array<{ type: string, reason?: string }> = []
  const { repo, port } = await listeningRepository(t, { capacityPages: 16, replyBufferBytes: 64 * 1024, stalledMs: 2000, onEvent: e => { events.push(e) } })
  const admin = await RepositoryClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => admin.close())
  const cap = await admin.issue(repo.adminToken, 'vm-a')
  await admin.put(cap, 1, pattern(1))
  const n = 20000
  const greedy = await connectFrom('127.0.0.1', port)
  t.teardown(() => greedy.destroy())
  greedy.pause()
  greedy.write(Buffer.concat(Array.from({ length: n }, (_, i) => P.encodeRequest(P.OP.GET, i + 1, cap, 1))))
  await new Promise(resolve => setTimeout(resolve, 1000))
  const served = (await admin.stats(repo.adminToken)).requests.get
  t.ok(served < n / 4, `only ${served} of ${n} GETs (${Math.round(n * 4112 / MiB)} MiB of replies) were answered while the peer reads nothing: the rest wait unread`)
  t.ok(served > 0, 'it did answer some')
  await admin.ping()
  t.pass('other connections are served meanwhile')
  // (A paused socket does not notice its end: the repository's event says it.)
  for (let i = 0; i < 50 && !events.some(e => e.type === 'repository.rejected'); i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.match(events.find(e => e.type === 'repository.rejected')?.reason, /peer read none of its \d+ bytes of replies for 2000 ms/, 'the stalled peer is dropped with a reason')
  t.equal((await admin.stats(repo.adminToken)).requests.get, served, 'no more of its requests were served')
})

/** A raw TCP connection to 127.0.0.1:port from a given local loopback address. */
async function connectFrom (localAddress: string, port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, localAddress })
  s.on('error', () => {})
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return s
}

/** Waits until `pred` holds (events arrive asynchronously). */
async function until (pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms
  while (!pred() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  return pred()
}

t.test('over TLS-PSK, a client without the repository\'s key gets nothing: clear text, TLS without a key, another key, a wrong key; each refusal is an event with the reason', async t => {
  const tls = newRepositoryTls()
  const events: Array<{ type: string, reason?: string }> = []
  const { repo, port } = await listeningRepository(t, { capacityPages: 16, listener: pskListener(tls), onEvent: e => { events.push(e) } })
  const refusals = (): string[] => events.filter(e => e.type === 'repository.rejected').map(e => e.reason ?? '')
  // Clear text: the protocol's own requests (a PING, STATS with the admin token) get no byte back.
  const clear = await poke({ port }, [P.encodeRequest(P.OP.PING, 1, Buffer.alloc(16), 0), P.encodeRequest(P.OP.STATS, 2, repo.adminToken, 0)], 2000)
  t.equal(clear.received.length, 0, 'a clear-text client receives nothing')
  t.ok(clear.closedByServer, 'and is disconnected')
  t.ok(await until(() => refusals().length === 1), 'one refusal')
  t.match(refusals()[0], /TLS handshake refused: not a TLS client \(clear text is not accepted\)/)
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port })
  await t.rejects(c.ping(), { code: 'SC_REPOSITORY_UNREACHABLE' }, 'the protocol client in clear text gets no answer either')
  // TLS, but without a pre-shared key (a certificate client, accepting any server).
  const noKey = await new Promise<{ error?: string, data: number }>(resolve => {
    let data = 0
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
    s.on('data', d => { data += d.length })
    s.on('secureConnect', () => { resolve({ data }); s.destroy() })
    s.on('error', e => { resolve({ error: (e as Error & { code?: string }).code ?? e.message, data }) })
  })
  t.ok(noKey.error !== undefined && noKey.data === 0, `a TLS client without the key fails the handshake (${noKey.error})`)
  t.ok(await until(() => refusals().some(r => /presented no pre-shared key/.test(r))), 'reported: no pre-shared key')
  // Another repository's credential (the "wrong CA" of a PSK), then the right identity with a wrong key.
  const other = newRepositoryTls()
  await t.rejects(RepositoryClient.connect({ host: '127.0.0.1', port }, { connector: pskConnector(() => other) }), { code: 'SC_REPOSITORY_TLS', message: new RegExp(`refused the TLS handshake for identity '${other.identity}'`) })
  t.ok(await until(() => refusals().some(r => r.includes(`presented identity '${other.identity}', this repository is '${tls.identity}'`))), 'reported: which identity was presented')
  await t.rejects(RepositoryClient.connect({ host: '127.0.0.1', port }, { connector: pskConnector(() => ({ identity: tls.identity, key: other.key })) }), { code: 'SC_REPOSITORY_TLS' })
  t.ok(await until(() => refusals().some(r => r.includes(`presented identity '${tls.identity}' with a wrong key`))), 'reported: a wrong key')
  await t.rejects(RepositoryClient.connect({ host: '127.0.0.1', port }, { connector: pskConnector(() => undefined) }), { code: 'SC_REPOSITORY_TLS', message: /no TLS credentials for repository .* \(clear text is not offered\)/ }, 'a client holding no credential does not try in clear')
  t.equal(repo.stats().requests.rejected, refusals().length, 'every refusal counted')
  t.same(repo.stats().requests, { put: 0, get: 0, del: 0, rejected: refusals().length }, 'and not one request was served')
})

t.test('over TLS-PSK, connections that never finish a handshake are capped: the ones beyond it are closed at once, and the repository serves again as soon as they go', async t => {
  const tls = newRepositoryTls()
  const { port } = await listeningRepository(t, { capacityPages: 16, maxConnections: 2, listener: pskListener(tls) })
  const cap = 2 + HANDSHAKE_ROOM
  // A peer opens 3x the cap and sends nothing (each would otherwise hold a socket for the 10 s handshake timeout).
  const flood: Socket[] = []
  const closedEarly = new Set<Socket>()
  for (let i = 0; i < 3 * cap; i++) {
    const s = connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
    s.on('error', () => {})
    s.on('close', () => closedEarly.add(s))
    flood.push(s)
  }
  t.teardown(() => { for (const s of flood) s.destroy() })
  t.ok(await until(() => closedEarly.size >= 2 * cap, 3000), `the repository closed the connections beyond its cap at once (${closedEarly.size} of ${3 * cap} closed, cap ${cap})`)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(flood.length - closedEarly.size, cap, 'exactly the cap is held open, waiting for handshakes')
  for (const s of flood) s.destroy()
  await new Promise(resolve => setTimeout(resolve, 200))
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port }, { connector: pskConnector(() => tls) })
  t.teardown(() => c.close())
  await c.ping()
  t.pass('once the flood is gone, the right client is served')
})

t.test('over TLS-PSK, the right client: pages written through cooperative swap are in the repository and read back intact; a repository without the key gets none', async t => {
  const tls = newRepositoryTls()
  const { repo, port } = await listeningRepository(t, { capacityPages: 64, listener: pskListener(tls) })
  const cap = repo.issue('web1')
  const events: Array<{ type: string }> = []
  const { svc, c } = await swapUsing(t, 'tls', port, e => { events.push(e) }, { capability: cap, connector: pskConnector(() => tls) })
  const pages = 32
  await Promise.all(Array.from({ length: pages }, async (_, p) => { await c.write(p * 4096, pattern(p)) }))
  await svc.path.settle()
  t.equal(repo.stats().usedPages, pages, 'the repository holds every page')
  let bad = 0
  for (let p = 0; p < pages; p++) if (!(await c.read(p * 4096, 4096)).equals(pattern(p))) bad++
  t.equal(bad, 0, 'every page reads back as written')
  t.equal(svc.path.stats().repositoryReads, pages, 'all of them from the repository, over TLS')
  t.same(events.filter(e => e.type === 'coopswap.repository-down' || e.type === 'coopswap.read-fallback'), [], 'no fallback')
  // A repository at the grant's address that does not hold the key (an impostor): the handshake fails, it gets no page.
  const impostor = await listeningRepository(t, { capacityPages: 64, listener: pskListener(newRepositoryTls()) })
  const ev2: Array<{ type: string, reason?: string }> = []
  const w = await swapUsing(t, 'tls-impostor', impostor.port, e => { ev2.push(e) }, { capability: impostor.repo.issue('web1'), connector: pskConnector(() => tls) })
  for (let p = 0; p < 8; p++) await w.c.write(p * 4096, pattern(p, 1))
  await w.svc.path.settle()
  t.equal(impostor.repo.stats().usedPages, 0, 'the impostor received no page')
  t.match(ev2.find(e => e.type === 'coopswap.repository-down')?.reason, /refused the TLS handshake/, 'the swap export says why it does not use it')
  for (let p = 0; p < 8; p++) bad += (await w.c.read(p * 4096, 4096)).equals(pattern(p, 1)) ? 0 : 1
  t.equal(bad, 0, 'the guest\'s pages read back from its disk')
})

t.test('the agent: its repository speaks TLS-PSK only and logs refusals; a swap export whose grant holds a wrong key says so and swaps to disk', async t => {
  const dir = tempDir(t, 'agent-tls')
  const repoHost = new AgentOverdriver(join(dir, 'r'), { autoTick: false })
  t.teardown(async () => { await repoHost.stop() })
  const info = await repoHost.startRepository({ host: '127.0.0.1', port: 0, capacityBytes: 4 * MiB })
  const vm = `${prefix}t1`
  const grant = repoHost.issue({ vm })
  t.match(grant.tls, { identity: /^repository-[0-9a-f]{12}$/, key: /^[0-9a-f]{64}$/ }, 'the grant carries the repository\'s credential')
  const clear = await poke({ port: info.port }, [P.encodeRequest(P.OP.GET, 1, Buffer.from(grant.capability, 'hex'), 0)], 2000)
  t.equal(clear.received.length, 0, 'a clear-text GET with a valid capability gets nothing')
  const log = (): string[] => (repoHost.stats() as { repositoryLog: string[] }).repositoryLog
  t.ok(await until(() => log().length > 0), 'the refusal is logged')
  t.match(log()[0], /refused 127\.0\.0\.1:\d+: TLS handshake refused: not a TLS client/)
  const user = new AgentOverdriver(join(dir, 'u'), { autoTick: false })
  t.teardown(async () => { await user.stop() })
  await mkdir(join(dir, 'u', vm), { recursive: true })
  const wrong = { ...grant, tls: { ...grant.tls, key: 'ab'.repeat(32) } }
  const sock = await user.startSwap({ name: vm, cpus: 1, memory: { requestedBytes: 256 * MiB, allocatedBytes: 128 * MiB }, image: { kind: 'kernel', kernel: '/nonexistent' }, disks: [], nics: [], swap: { sizeBytes: 4 * MiB, repositories: [wrong] }, bootTimeoutMs: 1000 })
  user.swapService(vm)?.setCooperative(true)
  const c = await NbdClient.connect({ path: sock }, 'swap')
  t.teardown(async () => { await c.close().catch(() => {}) })
  await c.write(0, pattern(0))
  await user.swapService(vm)?.path.settle()
  t.ok((await c.read(0, 4096)).equals(pattern(0)), 'the page reads back (from the disk)')
  const notes = (user.stats() as { tableLog: string[] }).tableLog
  t.match(notes.join('\n'), /repository 127\.0\.0\.1:\d+ is not used \(reads from the disk\): .*refused the TLS handshake/, 'the swap export\'s host says why')
  t.ok(await until(() => log().some(l => /with a wrong key/.test(l))), 'and the repository\'s host logs the wrong key')
  t.equal((repoHost.stats() as { repository: { usedPages: number } }).repository.usedPages, 0, 'no page reached the repository')
})
