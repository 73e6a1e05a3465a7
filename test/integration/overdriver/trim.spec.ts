/**
 * Swap slots the guest frees (NBD TRIM, what QEMU sends for a discard when the drive has
 * discard=unmap and the guest swaps with `swapon -d`): their pages leave the sector table and
 * the repository, the table on disk remembers it across a restart, partial pages stay, and the
 * pages that were not trimmed still read back.
 */
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import type { PageRepository } from '../../../overdriver/repository/server.ts'
import { qemuSwapArgs, SwapService } from '../../../overdriver/swap-service.ts'
import { listeningRepository, pattern, tempDir } from './helpers.ts'

const MiB = 1024 * 1024
const PAGES = 64

async function until (pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms
  while (!pred() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  return pred()
}

async function setup (t: Test, dir: string, repo: PageRepository, port: number, cap: Buffer): Promise<{ svc: SwapService, c: NbdClient }> {
  const svc = await SwapService.start({ vm: 'web1', diskPath: join(dir, 'swap.img'), sizeBytes: 4 * MiB, listen: { path: join(dir, 'nbd.sock') }, repositories: [{ address: { host: '127.0.0.1', port }, capability: cap }], cooperative: true })
  const c = await NbdClient.connect({ path: join(dir, 'nbd.sock') }, 'swap')
  return { svc, c }
}

t.test('TRIM frees the trimmed pages in the sector table and the repository', async t => {
  const dir = tempDir(t, 'trim')
  const { repo, port } = await listeningRepository(t, { capacityPages: 1024 })
  const cap = repo.issue('web1')
  let { svc, c } = await setup(t, dir, repo, port, cap)
  await Promise.all(Array.from({ length: PAGES }, (_, p) => c.write(p * 4096, pattern(p))))
  await svc.path.settle()
  t.equal(repo.stats().usedPages, PAGES)

  await c.trim(0, 16 * 4096)
  t.equal(svc.path.stats().pagesInRepositories, PAGES - 16, 'the sector table forgot the 16 trimmed pages')
  t.ok(await until(() => repo.stats().usedPages === PAGES - 16), `the repository freed them (${repo.stats().usedPages} used)`)
  await c.trim(16 * 4096 + 100, 4096)
  t.equal(svc.path.stats().pagesInRepositories, PAGES - 16, 'a trim covering no whole page frees nothing')
  t.equal(svc.counters().trims, 2)
  for (const p of [16, 17, 40, PAGES - 1]) t.ok((await c.read(p * 4096, 4096)).equals(pattern(p)), `page ${p} (not trimmed) reads back`)

  // The table on disk remembers the trim across a restart of the export.
  await c.flush()
  await c.close()
  await svc.stop()
  ;({ svc, c } = await setup(t, dir, repo, port, cap))
  t.teardown(async () => { await c.close().catch(() => {}); await svc.stop() })
  t.equal(svc.path.stats().pagesInRepositories, PAGES - 16, 'after a restart the table still has only the pages not trimmed')
  t.ok((await c.read(20 * 4096, 4096)).equals(pattern(20)))
})

t.test('a page trimmed while its put is in flight does not stay in the repository', async t => {
  const dir = tempDir(t, 'trim-race')
  const { repo, port } = await listeningRepository(t, { capacityPages: 1024 })
  const cap = repo.issue('web1')
  const { svc, c } = await setup(t, dir, repo, port, cap)
  t.teardown(async () => { await c.close().catch(() => {}); await svc.stop() })
  // Writes and trims of the same pages pipelined: each trim lands while that page's put may still be in flight.
  await Promise.all(Array.from({ length: PAGES }, async (_, p) => { await c.write(p * 4096, pattern(p)); await c.trim(p * 4096, 4096) }))
  await svc.path.settle()
  t.equal(svc.path.stats().pagesInRepositories, 0, 'nothing in the sector table')
  t.ok(await until(() => repo.stats().usedPages === 0), `nothing left in the repository (${repo.stats().usedPages} used)`)
})

t.test('the swap disk is attached with discard=unmap, so guest discards reach the export', async t => {
  const args = qemuSwapArgs({ socketPath: '/run/x/swap.sock' })
  const blockdev = JSON.parse(args[1] ?? '{}') as { discard?: string }
  t.equal(blockdev.discard, 'unmap')
})
