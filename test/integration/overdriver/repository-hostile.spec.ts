/**
 * The page repository read as an attacker would (issue 14): a repository answering GET with a
 * short page never puts leftover memory into the guest's page (the page comes from the local
 * disk, with a read-fallback event), and STATS, which lists every VM, needs the admin token.
 */
import t from 'tap'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import * as P from '../../../overdriver/repository/protocol.ts'
import { StreamReader, StreamClosedError } from '../../../overdriver/stream-reader.ts'
import { PageRepository } from '../../../overdriver/repository/server.ts'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import { SwapService } from '../../../overdriver/swap-service.ts'
import { pattern, tempDir } from './helpers.ts'

const MiB = 1024 * 1024

/** A repository speaking the protocol that takes every PUT and answers every GET with `getBytes` bytes of 0xAA. */
async function shortPageRepository (getBytes: number): Promise<{ port: number, gets: () => number, close: () => void }> {
  let gets = 0
  const sockets = new Set<Socket>()
  const srv = createServer(socket => {
    sockets.add(socket)
    socket.on('error', () => {})
    const reader = new StreamReader(socket)
    void (async () => {
      for (;;) {
        const h = P.parseRequestHeader(await reader.read(P.REQUEST_HEADER_SIZE))
        if (typeof h === 'string') { socket.destroy(); return }
        if (h.length > 0) await reader.read(h.length)
        if (h.op === P.OP.GET) { gets++; socket.write(P.encodeReply(P.STATUS.OK, h.id, Buffer.alloc(getBytes, 0xaa))) } else socket.write(P.encodeReply(P.STATUS.OK, h.id))
      }
    })().catch((e: unknown) => { if (!(e instanceof StreamClosedError)) socket.destroy() })
  })
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const addr = srv.address()
  if (addr === null || typeof addr === 'string') throw new Error('no port')
  return { port: addr.port, gets: () => gets, close: () => { for (const s of sockets) s.destroy(); srv.close() } }
}

for (const getBytes of [100, 0, 4095]) {
  t.test(`a repository answering GET with ${getBytes} bytes: the guest reads its own data from the disk, never leftover memory`, async t => {
    const dir = tempDir(t, 'hostile')
    const hostile = await shortPageRepository(getBytes)
    t.teardown(() => { hostile.close() })
    const events: Array<{ type: string }> = []
    const svc = await SwapService.start({
      vm: 'web1', diskPath: join(dir, 'swap.img'), sizeBytes: 4 * MiB, listen: { path: join(dir, 'nbd.sock') },
      repositories: [{ address: { host: '127.0.0.1', port: hostile.port }, capability: Buffer.alloc(16, 7) }], cooperative: true,
      onEvent: e => { events.push(e) }
    })
    t.teardown(() => svc.stop())
    const c = await NbdClient.connect({ path: join(dir, 'nbd.sock') }, 'swap')
    t.teardown(() => c.close())
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
  const repo = new PageRepository({ capacityPages: 16 })
  const port = await repo.listen(0)
  t.teardown(() => repo.close())
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => c.close())
  const a = await c.issue(repo.adminToken, 'vm-a')
  await c.issue(repo.adminToken, 'vm-b')
  await c.put(a, 1, pattern(1))
  await t.rejects(c.stats(a), { code: 'SC_REPOSITORY', status: 'denied', message: /STATS needs the admin token/ })
  await t.rejects(c.stats(Buffer.alloc(16, 9)), { code: 'SC_REPOSITORY', status: 'denied' }, 'nor can a made-up token')
  t.ok(c.alive, 'the connection stays usable')
  const s = await c.stats(repo.adminToken)
  t.same(s.vms.map(v => v.vm).sort(), ['vm-a', 'vm-b'], 'the admin token gets the list')
})
