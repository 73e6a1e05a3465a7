import t from 'tap'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pageSum, SectorTable } from '../../../overdriver/coopswap/sector-table.ts'
import * as N from '../../../overdriver/nbd/protocol.ts'
import * as R from '../../../overdriver/repository/protocol.ts'
import { pagesTouched } from '../../../overdriver/swap-path.ts'

const ref = { address: '198.18.1.10:7709', capability: 'ab'.repeat(16) }

const page = (n: number): Buffer => Buffer.alloc(4096, n)

t.test('sector table: JSON round trip names entries by first sector, with each page\'s checksum', async t => {
  const s = new SectorTable()
  const r = s.repositoryIndex(ref)
  t.equal(s.repositoryIndex({ ...ref }), r, 'same repository, same index')
  s.set(3, { repository: r, pageId: 3, diskOffset: 3 * 4096, sum: pageSum(page(3)) })
  s.set(1, { repository: r, pageId: 1, diskOffset: 4096, sum: pageSum(page(1)) })
  const j = s.toJSON()
  t.equal(j.version, 2)
  t.same(j.entries, [[8, 0, 1, 4096], [24, 0, 3, 12288]])
  t.equal(Buffer.from(j.sums ?? '', 'base64').length, 16, '8 bytes of checksum per entry')
  t.ok(JSON.stringify(j).length < 200, `compact (${JSON.stringify(j).length} bytes for 2 entries)`)
  const back = SectorTable.fromJSON(JSON.parse(JSON.stringify(j)))
  t.same(back.get(3), { repository: 0, pageId: 3, diskOffset: 12288, sum: pageSum(page(3)) })
  t.same(back.get(1)?.sum, pageSum(page(1)), 'each entry keeps its own checksum')
  t.not(pageSum(page(1)), pageSum(page(3)))
  t.equal(back.size, 2)
})

t.test('sector table: fromJSON rejects what it cannot trust; a version 1 table (no checksums) is read as empty', async t => {
  const good = { version: 2, pageSize: 4096, repositories: [ref], entries: [[8, 0, 1, 4096]], sums: Buffer.alloc(8, 1).toString('base64') }
  t.equal(SectorTable.fromJSON(good).size, 1)
  for (const [bad, why] of [
    [null, /not an object/], [{ ...good, version: 3 }, /version/], [{ ...good, pageSize: 512 }, /page size/],
    [{ ...good, entries: [[9, 0, 1, 0]] }, /not the start of a page/], [{ ...good, entries: [[8, 1, 1, 0]] }, /names repository 1 of 1/],
    [{ ...good, entries: [[8, 0, -1, 0]] }, /bad entry/], [{ ...good, repositories: [{ address: 'x', capability: 'zz' }] }, /bad repository/],
    [{ ...good, sums: undefined }, /sums must be a base64 string/], [{ ...good, sums: Buffer.alloc(7).toString('base64') }, /sums hold 7 bytes for 1 entries/],
    [{ ...good, sums: '!!!' }, /base64/]
  ] as Array<[unknown, RegExp]>) t.throws(() => SectorTable.fromJSON(bad), { code: 'SC_SECTOR_TABLE', message: why })
  const v1 = SectorTable.fromJSON({ version: 1, pageSize: 4096, repositories: [ref], entries: [[8, 0, 1, 4096]] })
  t.equal(v1.size, 0, 'no entry without a checksum: those pages are read from the local disk')
  t.equal(v1.repositories.length, 1)
})

t.test('sector table: journal replay after a crash, torn last record ignored, compaction', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sct-table-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'swap.table')
  const a = SectorTable.openPersistent(path)
  const r = a.repositoryIndex(ref)
  for (let p = 0; p < 10; p++) a.set(p, { repository: r, pageId: p, diskOffset: p * 4096, sum: pageSum(page(p)) })
  a.delete(4)
  a.set(2, { repository: r, pageId: 2, diskOffset: 8192, sum: pageSum(page(20)) })
  // Crash: no close(). A torn record at the end must not hurt.
  appendFileSync(`${path}.journal`, Buffer.from([3, 0, 0]))
  const b = SectorTable.openPersistent(path)
  t.equal(b.size, 9)
  t.notOk(b.has(4))
  t.same(b.get(9), { repository: 0, pageId: 9, diskOffset: 36864, sum: pageSum(page(9)) })
  t.same(b.get(2)?.sum, pageSum(page(20)), 'the journal keeps the newest checksum of a page')
  t.equal(readFileSync(`${path}.journal`).length, 0, 'opening compacts the journal into the snapshot')
  b.close()
  const c = SectorTable.openPersistent(path)
  t.equal(c.size, 9, 'snapshot alone restores it')
  t.same(c.get(7)?.sum, pageSum(page(7)), 'with the checksums')
  // A journal record of an older agent (a set without checksum, 27 bytes): that page is read from disk.
  const old = Buffer.alloc(27)
  old.writeUInt8(1, 0); old.writeBigUInt64BE(7n, 1); old.writeBigUInt64BE(7n, 11); old.writeBigUInt64BE(7n * 4096n, 19)
  appendFileSync(`${path}.journal`, old)
  c.set(8, { repository: 0, pageId: 8, diskOffset: 8 * 4096, sum: 5n })
  const d = SectorTable.openPersistent(path)
  t.notOk(d.has(7), 'an entry without a checksum is dropped')
  t.equal(d.get(8)?.sum, 5n, 'records after it still replay')
  d.close()
  writeFileSync(path, '{not json')
  t.throws(() => SectorTable.openPersistent(path), { code: 'SC_SECTOR_TABLE' })
})

t.test('pagesTouched counts 4 KiB pages a byte range covers', async t => {
  t.equal(pagesTouched(0, 0), 0)
  t.equal(pagesTouched(0, 4096), 1)
  t.equal(pagesTouched(0, 4097), 2)
  t.equal(pagesTouched(4095, 2), 2)
  t.equal(pagesTouched(8192, 32 * 4096), 32)
})

t.test('NBD protocol helpers: GO data and request headers', async t => {
  t.same(N.parseGo(N.encodeGo('swap', [3])), { name: 'swap', infos: [3] })
  t.match(N.parseGo(Buffer.from([0, 0, 0, 9, 1, 2])), /runs past/)
  t.match(N.parseGo(Buffer.alloc(3)), /too short/)
  t.match(N.parseGo(Buffer.concat([N.encodeGo('swap', [3]), Buffer.alloc(1)])), /does not match/)
  const big = Buffer.alloc(10); big.writeUInt32BE(100000, 0)
  t.match(N.parseGo(big), /above 4096/)
  const h = N.parseRequestHeader(N.encodeRequest(N.CMD_READ, 7n, 8192, 4096, 1))
  t.match(h, { magic: N.REQUEST_MAGIC, type: N.CMD_READ, offset: 8192, length: 4096, flags: 1 })
  const far = N.encodeRequest(N.CMD_READ, 7n, 0, 4096); far.writeBigUInt64BE(2n ** 63n, 16)
  t.equal(N.parseRequestHeader(far).offset, Infinity, 'offsets beyond 2^53 are out of range, not wrapped')
})

t.test('repository protocol: header validation', async t => {
  const cap = Buffer.alloc(16, 1)
  t.match(R.parseRequestHeader(R.encodeRequest(R.OP.PUT, 5, cap, 9, Buffer.alloc(4096)).subarray(0, 40)), { op: R.OP.PUT, id: 5, pageId: 9, length: 4096 })
  const cases: Array<[(b: Buffer) => void, RegExp]> = [
    [b => b.writeUInt32BE(1, 0), /bad magic/],
    [b => b.writeUInt8(9, 4), /version 9/],
    [b => b.writeUInt8(99, 5), /unknown operation 99/],
    [b => b.writeUInt16BE(1, 6), /reserved/],
    [b => b.writeBigUInt64BE(2n ** 60n, 28), /above 2\^53/],
    [b => b.writeUInt32BE(100, 36), /a page is 4096/]
  ]
  for (const [mut, why] of cases) {
    const b = R.encodeRequest(R.OP.PUT, 5, cap, 9, Buffer.alloc(4096)).subarray(0, 40)
    mut(b)
    t.match(R.parseRequestHeader(Buffer.from(b)), why)
  }
  const issue = R.encodeRequest(R.OP.ISSUE, 1, cap, 0, Buffer.alloc(2000)).subarray(0, 40)
  t.match(R.parseRequestHeader(Buffer.from(issue)), /above 1024/)
  t.match(R.parseRequestHeader(Buffer.alloc(10)), /expected 40/)
})
