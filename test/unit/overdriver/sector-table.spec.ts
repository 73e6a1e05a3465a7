import t from 'tap'
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SectorTable } from '../../../overdriver/coopswap/sector-table.ts'
import * as N from '../../../overdriver/nbd/protocol.ts'
import * as R from '../../../overdriver/repository/protocol.ts'
import { pagesTouched } from '../../../overdriver/swap-path.ts'

const ref = { address: '198.18.1.10:7709', capability: 'ab'.repeat(16) }

t.test('sector table: JSON round trip names entries by first sector', async t => {
  const s = new SectorTable()
  const r = s.repositoryIndex(ref)
  t.equal(s.repositoryIndex({ ...ref }), r, 'same repository, same index')
  s.set(3, { repository: r, pageId: 3, diskOffset: 3 * 4096 })
  s.set(1, { repository: r, pageId: 1, diskOffset: 4096 })
  const j = s.toJSON()
  t.same(j.entries, [[8, 0, 1, 4096], [24, 0, 3, 12288]])
  const back = SectorTable.fromJSON(JSON.parse(JSON.stringify(j)))
  t.same(back.get(3), { repository: 0, pageId: 3, diskOffset: 12288 })
  t.equal(back.size, 2)
})

t.test('sector table: fromJSON rejects what it cannot trust', async t => {
  const good = { version: 1, pageSize: 4096, repositories: [ref], entries: [[8, 0, 1, 4096]] }
  for (const [bad, why] of [
    [null, /not an object/], [{ ...good, version: 2 }, /version/], [{ ...good, pageSize: 512 }, /page size/],
    [{ ...good, entries: [[9, 0, 1, 0]] }, /not the start of a page/], [{ ...good, entries: [[8, 1, 1, 0]] }, /names repository 1 of 1/],
    [{ ...good, entries: [[8, 0, -1, 0]] }, /bad entry/], [{ ...good, repositories: [{ address: 'x', capability: 'zz' }] }, /bad repository/]
  ] as Array<[unknown, RegExp]>) t.throws(() => SectorTable.fromJSON(bad), { code: 'SC_SECTOR_TABLE', message: why })
})

t.test('sector table: journal replay after a crash, torn last record ignored, compaction', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sct-table-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'swap.table')
  const a = SectorTable.openPersistent(path)
  const r = a.repositoryIndex(ref)
  for (let p = 0; p < 10; p++) a.set(p, { repository: r, pageId: p, diskOffset: p * 4096 })
  a.delete(4)
  a.set(2, { repository: r, pageId: 2, diskOffset: 8192 })
  // Crash: no close(). A torn record at the end must not hurt.
  appendFileSync(`${path}.journal`, Buffer.from([1, 0, 0]))
  const b = SectorTable.openPersistent(path)
  t.equal(b.size, 9)
  t.notOk(b.has(4))
  t.same(b.get(9), { repository: 0, pageId: 9, diskOffset: 36864 })
  t.equal(readFileSync(`${path}.journal`).length, 0, 'opening compacts the journal into the snapshot')
  b.close()
  t.equal(SectorTable.openPersistent(path).size, 9, 'snapshot alone restores it')
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
