/**
 * The sector table moves with a migrating VM (issue #8): two host agents' Overdriver parts
 * (source and destination, each with its own VM directory, swap export on a unix socket) and a
 * third one running the page repository on loopback TCP. The migration's disk mirror is stood
 * in for by copying the swap disk (write-through: it holds every page); the handover is the
 * agents' calls the controller makes at the switchover hold (export, adopt, handover).
 *  - handed over: the destination serves a page put before the move from the repository (one
 *    GET more), frees it there once read, frees trimmed ones, and destroying the source frees nothing;
 *  - handover skipped: destroying the source frees every page, the destination reads the disk;
 *  - migration failed after the adopt: destroying the destination frees nothing, the source keeps serving;
 *  - a malformed table is refused.
 */
import t, { type Test } from 'tap'
import { copyFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { AgentOverdriver } from '../../../blanket-manager/agent/overdriver-host.ts'
import type { RepositoryGrantJson, VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import type { RepositoryStats } from '../../../overdriver/repository/server.ts'
import { pattern, prefix, tempDir } from './helpers.ts'

const MiB = 1024 * 1024
const PAGES = 32
const vm = `${prefix}m1`

async function until (pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms
  while (!pred() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  return pred()
}

function launch (grant: RepositoryGrantJson): VmLaunch {
  return {
    name: vm,
    cpus: 1,
    memory: { requestedBytes: 256 * MiB, allocatedBytes: 128 * MiB },
    image: { kind: 'kernel', kernel: '/nonexistent' },
    disks: [],
    nics: [],
    swap: { sizeBytes: 4 * MiB, repositories: [grant] },
    bootTimeoutMs: 1000
  }
}

interface Setup {
  repoStats: () => RepositoryStats
  src: AgentOverdriver
  dst: AgentOverdriver
  srcDir: string
  dstDir: string
  grantDst: RepositoryGrantJson
  cSrc: NbdClient
}

/** Repository host, source with PAGES pages written through cooperative swap (all in the repository). */
async function setup (t: Test, name: string): Promise<Setup> {
  const dir = tempDir(t, name)
  const repoHost = new AgentOverdriver(join(dir, 'r'), { autoTick: false })
  t.teardown(async () => { await repoHost.stop() })
  await repoHost.startRepository({ host: '127.0.0.1', port: 0, capacityBytes: 16 * MiB })
  const repoStats = (): RepositoryStats => (repoHost.stats() as { repository: RepositoryStats }).repository
  const grantSrc = repoHost.issue({ vm })
  const grantDst = repoHost.issue({ vm })
  const srcDir = join(dir, 'a')
  const dstDir = join(dir, 'b')
  await mkdir(join(srcDir, vm), { recursive: true })
  await mkdir(join(dstDir, vm), { recursive: true })
  const src = new AgentOverdriver(srcDir, { autoTick: false })
  const dst = new AgentOverdriver(dstDir, { autoTick: false })
  t.teardown(async () => { await src.stop(); await dst.stop() })
  const sock = await src.startSwap(launch(grantSrc))
  src.swapService(vm)?.setCooperative(true)
  const cSrc = await NbdClient.connect({ path: sock }, 'swap')
  t.teardown(async () => { await cSrc.close().catch(() => {}) })
  await Promise.all(Array.from({ length: PAGES }, async (_, p) => { await cSrc.write(p * 4096, pattern(p)) }))
  await src.swapService(vm)?.path.settle()
  await cSrc.flush()
  t.equal(repoStats().usedPages, PAGES, `the source put ${PAGES} pages in the repository`)
  return { repoStats, src, dst, srcDir, dstDir, grantDst, cSrc }
}

/** The destination's swap export on a copy of the source's disk (what the migration's mirror leaves there). */
async function arrive (s: Setup): Promise<NbdClient> {
  await copyFile(join(s.srcDir, vm, 'swap.img'), join(s.dstDir, vm, 'swap.img'))
  const sock = await s.dst.startSwap(launch(s.grantDst))
  return await NbdClient.connect({ path: sock }, 'swap')
}

t.test('handed over: the destination serves pages from the repository, reclaims them as read or trimmed; the source frees nothing', async t => {
  const s = await setup(t, 'handover')
  const c = await arrive(s)
  t.teardown(async () => { await c.close().catch(() => {}) })

  const table = (await s.src.exportTable(vm)).table
  t.equal(table.entries.length, PAGES, 'the exported table names every page')
  const r = s.dst.adoptTable({ name: vm, table })
  t.same(r, { adopted: PAGES, skipped: 0, repositories: 1 }, 'the destination adopted all of them')
  s.src.handover({ name: vm, ok: true })
  s.dst.arrivalCommitted(vm)

  await s.src.stopSwap(vm, 'destroy')
  t.equal(s.repoStats().usedPages, PAGES, 'destroying the source copy left the pages to the destination')

  const gets = s.repoStats().requests.get
  t.ok((await c.read(3 * 4096, 4096)).equals(pattern(3)), 'page 3 reads back at the destination')
  t.equal(s.repoStats().requests.get, gets + 1, 'served by the repository (one GET)')
  t.ok(await until(() => s.repoStats().usedPages === PAGES - 1), `read, it was freed at the repository (${s.repoStats().usedPages} used)`)
  t.ok((await c.read(3 * 4096, 4096)).equals(pattern(3)), 'read again: same data')
  t.equal(s.repoStats().requests.get, gets + 1, 'from the disk this time')

  await c.trim(4 * 4096, 2 * 4096)
  t.ok(await until(() => s.repoStats().usedPages === PAGES - 3), 'trimmed pages freed too')
  t.ok((await c.read(10 * 4096, 4096)).equals(pattern(10)))

  // New writes at the destination go under its own capability, not the one that came with the VM.
  const od = s.dst.swapService(vm)
  od?.setCooperative(true)
  await c.write(40 * 4096, pattern(40))
  await od?.path.settle()
  const st = od?.path.stats()
  t.equal(st?.repositories.find(x => x.granted)?.pages, 1, 'the new page is under the destination\'s grant')
  t.equal(st?.reclaimedOnRead, 2, 'pages 3 and 10 reclaimed on read')
  t.match((s.dst.stats() as { tableLog: string[] }).tableLog.join('\n'), /sector table adopted: 32 page/, 'the adoption is logged')

  await s.dst.stopSwap(vm, 'destroy')
  t.ok(await until(() => s.repoStats().usedPages === 0), `destroying the VM on the destination freed the rest (${s.repoStats().usedPages} used)`)
})

t.test('handover skipped: the source frees the pages, the destination reads its disk', async t => {
  const s = await setup(t, 'skipped')
  const c = await arrive(s)
  t.teardown(async () => { await c.close().catch(() => {}) })
  await s.src.stopSwap(vm, 'destroy')
  t.equal(s.repoStats().usedPages, 0, 'no page left in the repository')
  t.match((s.src.stats() as { tableLog: string[] }).tableLog.join('\n'), /freed 32 repository page/, 'logged')
  const gets = s.repoStats().requests.get
  for (const p of [0, 7, PAGES - 1]) t.ok((await c.read(p * 4096, 4096)).equals(pattern(p)), `page ${p} reads back from the destination's disk`)
  t.equal(s.repoStats().requests.get, gets, 'no repository GET')
})

t.test('adopted but the migration failed: destroying the destination frees nothing, the source keeps its table', async t => {
  const s = await setup(t, 'failed')
  const c = await arrive(s)
  const r = s.dst.adoptTable({ name: vm, table: (await s.src.exportTable(vm)).table })
  t.equal(r.adopted, PAGES)
  await c.close()
  await s.dst.stopSwap(vm, 'destroy')
  t.equal(s.repoStats().usedPages, PAGES, 'the pages stay for the source')
  s.src.handoverAborted(vm)
  const gets = s.repoStats().requests.get
  t.ok((await s.cSrc.read(5 * 4096, 4096)).equals(pattern(5)), 'the source still reads page 5')
  t.equal(s.repoStats().requests.get, gets + 1, 'from the repository')
  await s.src.stopSwap(vm, 'destroy')
  t.equal(s.repoStats().usedPages, 0, 'deleting the VM on the source frees its pages')
})

t.test('a malformed table is refused and changes nothing', async t => {
  const s = await setup(t, 'bad')
  const c = await arrive(s)
  t.teardown(async () => { await c.close().catch(() => {}) })
  const table = (await s.src.exportTable(vm)).table
  t.throws(() => s.dst.adoptTable({ name: vm, table: { ...table, entries: [[3, 5, 0, 0]] } }), { code: 'SC_SECTOR_TABLE' })
  t.throws(() => s.dst.adoptTable({ name: vm, table: 'nope' as unknown as typeof table }))
  t.equal(s.dst.swapService(vm)?.path.stats().pagesInRepositories, 0, 'the destination table stays empty')
  t.throws(() => s.dst.adoptTable({ name: `${prefix}zz`, table }), { code: 'SC_AGENT_BAD_REQUEST' }, 'unknown VM')
})
