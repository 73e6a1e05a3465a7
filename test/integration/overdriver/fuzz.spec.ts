/**
 * Malformed NBD and page repository messages against live servers: random bytes, mutated
 * valid handshakes and requests. The servers must not crash, must close bad connections
 * with a logged reason, and must serve a good client afterwards. Seeded, so failures repeat.
 */
import t from 'tap'
import { join } from 'node:path'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import * as N from '../../../overdriver/nbd/protocol.ts'
import { NbdServer, type NbdServerEvent } from '../../../overdriver/nbd/server.ts'
import * as R from '../../../overdriver/repository/protocol.ts'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { PageRepository, type RepositoryEvent } from '../../../overdriver/repository/server.ts'
import { FileSwapPath } from '../../../overdriver/swap-path.ts'
import { pattern, poke, tempDir } from './helpers.ts'

/** xorshift32: a small seeded generator. */
function rng (seed: number): () => number {
  let x = seed >>> 0 || 1
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 0x100000000 }
}
const SEED = Number(process.env.FUZZ_SEED ?? 20240611)
const ROUNDS = Number(process.env.FUZZ_ROUNDS ?? 150)

function mutate (b: Buffer, r: () => number): Buffer {
  const out = Buffer.from(b)
  const kind = Math.floor(r() * 4)
  if (kind === 0 && out.length > 0) { // flip bytes
    for (let i = 0; i < 1 + Math.floor(r() * 4); i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256)
    return out
  }
  if (kind === 1) return out.subarray(0, Math.floor(r() * out.length)) // truncate
  if (kind === 2) { // overwrite a 32-bit field with an extreme value
    const at = Math.floor(r() * Math.max(1, out.length - 4))
    if (out.length >= at + 4) out.writeUInt32BE([0xffffffff, 0x80000000, 0, 0x7fffffff, 4097][Math.floor(r() * 5)] ?? 0, at)
    return out
  }
  const extra = Buffer.alloc(Math.floor(r() * 64)) // append garbage
  for (let i = 0; i < extra.length; i++) extra[i] = Math.floor(r() * 256)
  return Buffer.concat([out, extra])
}

t.test('NBD server survives random and mutated input and still serves', async t => {
  const dir = tempDir(t, 'fuzz')
  const disk = await FileSwapPath.open(join(dir, 'swap.img'), { sizeBytes: 1024 * 1024 })
  const events: NbdServerEvent[] = []
  const server = new NbdServer({ onEvent: e => events.push(e), handshakeTimeoutMs: 2000 })
  server.addExport('swap', disk)
  const port = await server.listen({ port: 0 })
  t.teardown(async () => { await server.close(); await disk.close() })
  const r = rng(SEED)

  const clientFlags = Buffer.alloc(4)
  clientFlags.writeUInt32BE(N.CLIENT_FLAG_FIXED_NEWSTYLE | N.CLIENT_FLAG_NO_ZEROES)
  const go = N.encodeOption(N.OPT_GO, N.encodeGo('swap'))
  const write = Buffer.concat([N.encodeRequest(N.CMD_WRITE, 1n, 0, 4096), Buffer.alloc(4096, 7)])
  const read = N.encodeRequest(N.CMD_READ, 2n, 4096, 4096)
  const valid = [clientFlags, go, write, read]

  let closed = 0
  for (let i = 0; i < ROUNDS; i++) {
    let chunks: Buffer[]
    const mode = i % 3
    if (mode === 0) {
      const b = Buffer.alloc(1 + Math.floor(r() * 200))
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256)
      chunks = [b]
    } else {
      // Mutate one message of an otherwise valid session (mode 2: only transmission messages).
      const at = mode === 1 ? Math.floor(r() * valid.length) : 2 + Math.floor(r() * 2)
      chunks = valid.map((m, j) => j === at ? mutate(m, r) : m)
    }
    const res = await poke({ port }, chunks, 150)
    if (res.closedByServer) closed++
  }
  t.ok(closed > ROUNDS / 3, `server closed ${closed}/${ROUNDS} bad sessions itself`)
  const reasons = events.filter(e => e.type === 'nbd.rejected').map(e => (e as { reason: string }).reason)
  t.ok(reasons.length > 0, `${reasons.length} rejections logged`)
  t.ok(reasons.every(x => x.length > 0 && !/internal error/.test(x)), 'every rejection has a protocol reason, none is an internal error')
  t.ok(reasons.some(x => /bad (request|option) magic/.test(x)), 'bad magics recognised')
  t.ok(reasons.some(x => /client flags|fixed newstyle/.test(x)), 'bad client flags recognised')

  // Specific malformed messages, each with its expected reason.
  const specific: Array<[string, Buffer[], RegExp]> = [
    ['huge option length', [clientFlags, Buffer.concat([N.encodeOption(N.OPT_GO).subarray(0, 12), Buffer.from([0xff, 0xff, 0xff, 0xff])])], /above 16384/],
    ['huge write', [clientFlags, go, N.encodeRequest(N.CMD_WRITE, 9n, 0, 0xffffffff)], /above the 33554432 byte maximum/],
    ['unknown client flags', [Buffer.from([0, 0, 0, 0x81])], /unknown client flags/]
  ]
  for (const [what, chunks, reason] of specific) {
    const before = events.length
    const res = await poke({ port }, chunks, 300)
    t.ok(res.closedByServer, `${what}: connection closed`)
    t.ok(events.slice(before).some(e => e.type === 'nbd.rejected' && reason.test(e.reason)), `${what}: reason logged`)
  }
  // A GO with an inconsistent length gets an error reply, not a disconnect.
  const badGo = N.encodeOption(N.OPT_GO, Buffer.from([0, 0, 0, 50, 1, 2]))
  const res = await poke({ port }, [clientFlags, badGo], 300)
  t.notOk(res.closedByServer, 'malformed GO data: connection stays in the handshake')
  t.ok(res.received.subarray(18).readUInt32BE(12) === N.REP_ERR_INVALID, 'answered NBD_REP_ERR_INVALID')
  t.match(res.received.subarray(18 + 20).toString(), /runs past the option data/)

  const c = await NbdClient.connect({ port }, 'swap')
  await c.write(8192, pattern(5))
  t.ok((await c.read(8192, 4096)).equals(pattern(5)), 'a good client is served after the fuzzing')
  await c.close()
})

t.test('page repository survives random and mutated input and still serves', async t => {
  const events: RepositoryEvent[] = []
  const repo = new PageRepository({ capacityPages: 64, onEvent: e => events.push(e) })
  const port = await repo.listen(0)
  t.teardown(() => repo.close())
  const cap = repo.issue('fuzz-vm')
  const r = rng(SEED + 1)
  const valid = [
    R.encodeRequest(R.OP.PUT, 1, cap, 3, pattern(3)),
    R.encodeRequest(R.OP.GET, 2, cap, 3),
    R.encodeRequest(R.OP.DEL, 3, cap, 3)
  ]
  let closed = 0
  for (let i = 0; i < ROUNDS; i++) {
    let chunks: Buffer[]
    if (i % 2 === 0) {
      const b = Buffer.alloc(1 + Math.floor(r() * 120))
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(r() * 256)
      chunks = [b]
    } else {
      const at = Math.floor(r() * valid.length)
      chunks = valid.map((m, j) => j === at ? mutate(m, r) : m)
    }
    const res = await poke({ port }, chunks, 120)
    if (res.closedByServer) closed++
  }
  t.ok(closed > 0, `repository closed ${closed} bad sessions`)
  const reasons = events.filter(e => e.type === 'repository.rejected').map(e => (e as { reason: string }).reason)
  t.ok(reasons.length > 0 && reasons.every(x => !/internal error/.test(x)), `${reasons.length} rejections, all with protocol reasons`)
  t.ok(reasons.some(x => /bad magic/.test(x)))

  // The reason reaches the peer in a BAD_REQUEST reply before the close.
  const bad = R.encodeRequest(R.OP.GET, 77, cap, 1)
  bad.writeUInt32BE(4096, 36) // GET with a payload length
  const res = await poke({ port }, [bad], 300)
  t.ok(res.closedByServer)
  t.equal(res.received.readUInt8(4), R.STATUS.BAD_REQUEST)
  t.equal(res.received.readUInt32BE(8), 77, 'reply names the request')
  t.match(res.received.subarray(16).toString(), /carries no payload/)

  const c = await RepositoryClient.connect({ host: '127.0.0.1', port })
  await c.put(cap, 9, pattern(9))
  t.ok((await c.get(cap, 9))?.equals(pattern(9)), 'a good client is served afterwards')
  c.close()
})
