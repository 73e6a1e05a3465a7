/**
 * Cooperative swap through the NBD export: write-through to the local disk, reads from
 * repositories, a repository killed mid-run (nothing lost), a full repository, the swap
 * server killed and restarted (the sector table resumes), and the table moving with a VM.
 */
import t, { type Test } from 'tap'
import { copyFileSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import { PageRepository } from '../../../overdriver/repository/server.ts'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { SwapService } from '../../../overdriver/swap-service.ts'
import type { CoopSwapEvent } from '../../../overdriver/coopswap/coop-swap-path.ts'
import { killHard, pattern, startNode, tempDir } from './helpers.ts'

const MiB = 1024 * 1024
const PAGES = 256

async function inProcessRepo (t: Test, capacityPages = 4096): Promise<{ repo: PageRepository, port: number }> {
  const repo = new PageRepository({ capacityPages })
  const port = await repo.listen(0)
  t.teardown(() => repo.close())
  return { repo, port }
}

async function verifyAll (c: NbdClient, pages: number, gen: (p: number) => number): Promise<number> {
  let bad = 0
  for (let p = 0; p < pages; p += 32) {
    const rs = await Promise.all(Array.from({ length: Math.min(32, pages - p) }, (_, i) => c.read((p + i) * 4096, 4096)))
    rs.forEach((b, i) => { if (!b.equals(pattern(p + i, gen(p + i)))) bad++ })
  }
  return bad
}

t.test('write-through: every page on the local disk and in the repository; reads come from the repository', async t => {
  const dir = tempDir(t, 'coop')
  const { repo, port } = await inProcessRepo(t)
  const cap = repo.issue('web1')
  const svc = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'swap.img'), sizeBytes: 8 * MiB, listen: { path: join(dir, 'nbd.sock') }, repositories: [{ address: { host: '127.0.0.1', port }, capability: cap }], cooperative: true })
  t.teardown(() => svc.stop())
  const c = await NbdClient.connect({ path: join(dir, 'nbd.sock') }, 'swap')
  t.teardown(() => c.close())
  await Promise.all(Array.from({ length: PAGES }, (_, p) => c.write(p * 4096, pattern(p))))
  await svc.path.settle()
  t.equal(repo.stats().usedPages, PAGES, 'repository holds every page')
  t.equal(svc.path.stats().pagesInRepositories, PAGES, 'sector table names every page')
  const disk = readFileSync(join(dir, 'swap.img'))
  let onDisk = 0
  for (let p = 0; p < PAGES; p++) if (disk.subarray(p * 4096, (p + 1) * 4096).equals(pattern(p))) onDisk++
  t.equal(onDisk, PAGES, 'local disk holds every page (write-through)')
  t.equal(await verifyAll(c, PAGES, () => 0), 0, 'all pages read back')
  t.ok(svc.path.stats().repositoryReads >= PAGES, `reads served by the repository (${svc.path.stats().repositoryReads})`)
  // A multi-page read mixing repository pages and disk-only pages.
  svc.setCooperative(false)
  await c.write(PAGES * 4096, pattern(PAGES))
  const mixed = await c.read((PAGES - 2) * 4096 + 100, 3 * 4096 - 200)
  t.ok(mixed.equals(Buffer.concat([pattern(PAGES - 2), pattern(PAGES - 1), pattern(PAGES)]).subarray(100, 3 * 4096 - 100)), 'unaligned read across repository and disk pages')
  t.equal(svc.path.stats().pagesInRepositories, PAGES, 'with cooperative swap off, new pages stay on disk')
  const c2 = svc.counters()
  t.ok(c2.writePages >= PAGES + 1 && c2.readPages >= PAGES, 'paging operations counted')
  t.equal(await svc.path.reclaim(), PAGES, 'reclaim forgets every repository page')
  t.equal(repo.stats().usedPages, 0, 'and frees the repository')
  t.equal(await verifyAll(c, PAGES, () => 0), 0, 'data still there, from disk')
})

t.test('a page rewritten while its repository write is in flight reads back as the newest version', async t => {
  const dir = tempDir(t, 'race')
  const { repo, port } = await inProcessRepo(t)
  const svc = await SwapService.start({ vm: 'v', diskPath: join(dir, 'swap.img'), sizeBytes: 4 * MiB, listen: { port: 0 }, repositories: [{ address: { host: '127.0.0.1', port }, capability: repo.issue('v') }], cooperative: true })
  t.teardown(() => svc.stop())
  const c = await NbdClient.connect({ port: svc.port }, 'swap')
  t.teardown(() => c.close())
  for (let g = 0; g < 5; g++) await Promise.all(Array.from({ length: 64 }, (_, p) => c.write(p * 4096, pattern(p, g))))
  await svc.path.settle()
  t.equal(await verifyAll(c, 64, () => 4), 0, 'every page is generation 4')
  // Partial-page writes invalidate the page; it is read from disk.
  await c.write(5 * 4096 + 10, Buffer.from('hello'))
  const p5 = await c.read(5 * 4096, 4096)
  const want = pattern(5, 4); want.write('hello', 10)
  t.ok(p5.equals(want), 'partial write visible')
})

t.test('repository with no room: the rest stays on disk, nothing lost', async t => {
  const dir = tempDir(t, 'full')
  const { repo, port } = await inProcessRepo(t, 40)
  const events: CoopSwapEvent[] = []
  const svc = await SwapService.start({ vm: 'v', diskPath: join(dir, 'swap.img'), sizeBytes: 4 * MiB, listen: { port: 0 }, repositories: [{ address: { host: '127.0.0.1', port }, capability: repo.issue('v') }], cooperative: true, onEvent: e => { if (e.type.startsWith('coopswap')) events.push(e as CoopSwapEvent) } })
  t.teardown(() => svc.stop())
  const c = await NbdClient.connect({ port: svc.port }, 'swap')
  t.teardown(() => c.close())
  for (let p = 0; p < 200; p++) await c.write(p * 4096, pattern(p))
  await svc.path.settle()
  t.equal(repo.stats().usedPages, 40)
  t.equal(svc.path.stats().pagesInRepositories, 40)
  t.ok(events.some(e => e.type === 'coopswap.repository-full'), 'repository-full reported')
  t.equal(await verifyAll(c, 200, () => 0), 0)
})

t.test('repository process killed while it holds pages: reads fall back to disk, no page lost', async t => {
  const dir = tempDir(t, 'kill')
  const tokenFile = join(dir, 'admin.token')
  const { proc, first } = await startNode(t, 'overdriver/repository/main.ts', ['--port', '0', '--capacity', '16M', '--admin-token-file', tokenFile])
  const port = (first.listening as { port: number }).port
  const admin = await RepositoryClient.connect({ host: '127.0.0.1', port })
  const cap = await admin.issue(Buffer.from(readFileSync(tokenFile, 'utf8').trim(), 'hex'), 'web1')
  admin.close()
  const events: CoopSwapEvent[] = []
  const svc = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'swap.img'), sizeBytes: 8 * MiB, listen: { port: 0 }, repositories: [{ address: { host: '127.0.0.1', port }, capability: cap }], cooperative: true, onEvent: e => { if (e.type.startsWith('coopswap')) events.push(e as CoopSwapEvent) } })
  t.teardown(() => svc.stop())
  const c = await NbdClient.connect({ port: svc.port }, 'swap')
  t.teardown(() => c.close())
  const gen = new Map<number, number>()
  const writeRange = async (from: number, to: number, g: number): Promise<void> => {
    await Promise.all(Array.from({ length: to - from }, (_, i) => { gen.set(from + i, g); return c.write((from + i) * 4096, pattern(from + i, g)) }))
  }
  await writeRange(0, 512, 0)
  await svc.path.settle()
  t.equal(svc.path.stats().pagesInRepositories, 512, 'repository holds 512 pages before the kill')
  // Kill it while writes are still going to it.
  const writing = writeRange(256, 768, 1)
  await killHard(proc)
  await writing
  await writeRange(768, 1024, 2)
  await svc.path.settle()
  const bad = await verifyAll(c, 1024, p => gen.get(p) ?? 0)
  t.equal(bad, 0, 'all 1024 pages read back correctly after the repository died')
  const s = svc.path.stats()
  t.equal(s.repositories[0]?.alive, false, 'repository marked down')
  t.ok(events.some(e => e.type === 'coopswap.repository-down'), 'repository-down reported')
  t.equal(s.pagesInRepositories, 0, 'entries of the dead repository dropped as they were read')
})

t.test('swap server killed and restarted: the persisted sector table resumes', async t => {
  const dir = tempDir(t, 'restart')
  const { repo, port } = await inProcessRepo(t)
  const cap = repo.issue('web1')
  const sock = join(dir, 'nbd.sock')
  const ctl = join(dir, 'ctl.sock')
  const args = ['--vm', 'web1', '--disk', join(dir, 'swap.img'), '--size', '8M', '--socket', sock, '--control', ctl, '--repository', `127.0.0.1:${port}=${cap.toString('hex')}`, '--cooperative']
  const control = (req: object): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const s = connect(ctl)
    let out = ''
    s.on('data', d => { out += d.toString(); if (out.includes('\n')) { s.destroy(); resolve(JSON.parse(out) as Record<string, unknown>) } })
    s.on('error', reject)
    s.write(JSON.stringify(req) + '\n')
  })
  const a = await startNode(t, 'overdriver/swapd.ts', args)
  t.match(a.first, { ready: { vm: 'web1' } })
  const c = await NbdClient.connect({ path: sock }, 'swap')
  await Promise.all(Array.from({ length: 300 }, (_, p) => c.write(p * 4096, pattern(p))))
  // Wait until the asynchronous repository writes landed (the table journals them).
  for (let i = 0; i < 100; i++) {
    const st = await control({ op: 'stats' }) as { coopswap: { pagesInRepositories: number } }
    if (st.coopswap.pagesInRepositories === 300) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  // Overwrite some pages so the journal holds deletions too, then crash without any shutdown.
  await Promise.all(Array.from({ length: 20 }, (_, p) => c.write(p * 4096, pattern(p, 1))))
  await killHard(a.proc)
  c.close().catch(() => {})
  t.equal(repo.stats().usedPages, 300)

  const b = await startNode(t, 'overdriver/swapd.ts', args)
  t.match(b.first, { ready: { vm: 'web1' } })
  const st = await control({ op: 'stats' }) as { coopswap: { pagesInRepositories: number } }
  t.ok(st.coopswap.pagesInRepositories >= 280, `table resumed with ${st.coopswap.pagesInRepositories} repository pages`)
  const c2 = await NbdClient.connect({ path: sock }, 'swap')
  t.equal(await verifyAll(c2, 300, p => p < 20 ? 1 : 0), 0, 'every page correct after the restart')
  const after = await control({ op: 'stats' }) as { coopswap: { repositoryReads: number } }
  t.ok(after.coopswap.repositoryReads >= 280, 'and served from the repository')
  await c2.close()
  t.match(await control({ op: 'bogus' }), { error: /unknown op/ })
  t.match(await control({ op: 'cooperative' }), { error: /needs "on"/ })
  const table = await control({ op: 'table' }) as { entries: unknown[], repositories: unknown[] }
  t.equal(table.repositories.length, 1)
  await control({ op: 'stop' })
  await new Promise(resolve => b.proc.once('exit', resolve))
})

t.test('the sector table moves with the VM: a new host reads pages from the same repository', async t => {
  const dir = tempDir(t, 'move')
  const { repo, port } = await inProcessRepo(t)
  const grant = { address: { host: '127.0.0.1', port }, capability: repo.issue('web1') }
  const src = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'src.img'), sizeBytes: 4 * MiB, listen: { port: 0 }, repositories: [grant], cooperative: true })
  const c = await NbdClient.connect({ port: src.port }, 'swap')
  await Promise.all(Array.from({ length: 100 }, (_, p) => c.write(p * 4096, pattern(p))))
  await c.close()
  const table = await src.path.exportTable()
  t.equal(table.entries.length, 100)
  t.same(table.entries[1], [8, 0, 1, 4096], 'entries: [first sector, repository, page id, disk offset]')
  await src.stop()
  copyFileSync(join(dir, 'src.img'), join(dir, 'dst.img')) // the swap disk moves too
  const dst = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'dst.img'), listen: { port: 0 }, repositories: [grant], table })
  t.teardown(() => dst.stop())
  const d = await NbdClient.connect({ port: dst.port }, 'swap')
  t.equal(await verifyAll(d, 100, () => 0), 0)
  t.equal(dst.path.stats().repositoryReads, 100, 'every page came from the repository')
  await d.close()
})
