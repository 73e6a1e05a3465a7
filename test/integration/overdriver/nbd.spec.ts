/**
 * The NBD server against real clients: our TS client, and QEMU's own NBD client through
 * qemu-img and qemu-io, over TCP on loopback and over a unix socket.
 */
import t, { type Test } from 'tap'
import { run } from './helpers.ts'
import { join } from 'node:path'
import { NbdClient } from '../../../overdriver/nbd/client.ts'
import { NbdServer, type NbdServerEvent } from '../../../overdriver/nbd/server.ts'
import { FileSwapPath } from '../../../overdriver/swap-path.ts'
import { haveQemuUtils, pattern, tempDir } from './helpers.ts'

const MiB = 1024 * 1024

async function serve (t: Test, opts: { unix?: boolean } = {}): Promise<{ server: NbdServer, where: { port: number } | { path: string }, disk: FileSwapPath, events: NbdServerEvent[], dir: string }> {
  const dir = tempDir(t, 'nbd')
  const disk = await FileSwapPath.open(join(dir, 'swap.img'), { sizeBytes: 16 * MiB })
  const events: NbdServerEvent[] = []
  const server = new NbdServer({ onEvent: e => events.push(e) })
  server.addExport('swap', disk)
  const where = opts.unix === true ? { path: join(dir, 'nbd.sock') } : { port: 0 }
  const port = await server.listen(where)
  t.teardown(async () => { await server.close(); await disk.close() })
  return { server, where: 'path' in where ? where : { port }, disk, events, dir }
}

t.test('TS client: write, read back, flush, trim, counters in pages', async t => {
  const { server, where } = await serve(t)
  const c = await NbdClient.connect(where, 'swap')
  t.equal(c.sizeBytes, 16 * MiB)
  const pages = [0, 1, 7, 4095]
  await Promise.all(pages.map(p => c.write(p * 4096, pattern(p))))
  const back = await Promise.all(pages.map(p => c.read(p * 4096, 4096)))
  back.forEach((b, i) => t.ok(b.equals(pattern(pages[i] ?? 0)), `page ${pages[i]} reads back`))
  // A request spanning pages counts every page it touches.
  await c.write(4096 * 10 + 100, Buffer.alloc(8192, 1))
  await c.flush()
  await c.trim(0, 4096)
  const n = server.getExport('swap')?.counters
  t.match(n, { writeOps: 5, writePages: 4 + 3, readOps: 4, readPages: 4, flushes: 1, trims: 1, errors: 0 })
  await c.close()
})

t.test('out-of-range and unsupported requests get EINVAL and the connection keeps working', async t => {
  const { server, where, events } = await serve(t)
  const c = await NbdClient.connect(where, 'swap')
  await t.rejects(c.read(16 * MiB - 4096, 8192), { code: 'SC_NBD_REQUEST', errno: 22 })
  await t.rejects(c.write(16 * MiB, Buffer.alloc(4096)), { code: 'SC_NBD_REQUEST', errno: 22 })
  await c.write(0, pattern(3))
  t.ok((await c.read(0, 4096)).equals(pattern(3)), 'still serving after the errors')
  t.equal(server.getExport('swap')?.counters.errors, 2)
  t.ok(events.some(e => e.type === 'nbd.request-failed' && /past the end/.test(e.reason)))
  await c.close()
})

t.test('unknown export is refused with a reason; the export list names ours', async t => {
  const { where } = await serve(t)
  await t.rejects(NbdClient.connect(where, 'nope'), { code: 'SC_NBD_PROTOCOL', message: /no export named 'nope'/ })
})

t.test('unix socket', async t => {
  const { where } = await serve(t, { unix: true })
  const c = await NbdClient.connect(where, 'swap')
  await c.write(8192, pattern(2))
  t.ok((await c.read(8192, 4096)).equals(pattern(2)))
  await c.close()
})

t.test("QEMU's NBD client: qemu-img info and qemu-io write/read with a pattern", { skip: haveQemuUtils ? false : 'qemu-utils missing' }, async t => {
  const { server, where, dir } = await serve(t)
  const port = 'port' in where ? where.port : 0
  const info = await run('qemu-img', ['info', '--output=json', `nbd://127.0.0.1:${port}/swap`])
  t.equal(info.status, 0, info.stderr)
  t.match(JSON.parse(info.stdout), { 'virtual-size': 16 * MiB, format: 'raw' })
  const io = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', '-c', 'flush', `nbd://127.0.0.1:${port}/swap`])
  t.equal(io.status, 0, io.stderr)
  t.match(io.stdout, /wrote 1048576\/1048576 bytes at offset 0/)
  t.match(io.stdout, /read 1048576\/1048576 bytes at offset 0/)
  t.notMatch(io.stdout + io.stderr, /Pattern verification failed/)
  const c = server.getExport('swap')?.counters
  t.equal(c?.writeBytes, MiB)
  t.ok((c?.readBytes ?? 0) >= MiB)
  t.ok((c?.flushes ?? 0) >= 1)
  // Over a unix socket, as the agent attaches guests.
  const u = await serve(t, { unix: true })
  const sock = 'path' in u.where ? u.where.path : ''
  const io2 = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 4096 64k', '-c', 'read -P 0x5a 4096 64k', `nbd+unix:///swap?socket=${sock}`])
  t.equal(io2.status, 0, io2.stderr)
  t.notMatch(io2.stdout + io2.stderr, /Pattern verification failed/)
  // The bytes are in the backing file.
  const raw = await run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 1M', join(dir, 'swap.img')])
  t.notMatch(raw.stdout + raw.stderr, /Pattern verification failed/, 'backing file holds what QEMU wrote')
})
