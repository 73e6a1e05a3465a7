/**
 * The image build against the real inputs on this machine (kernel in /boot,
 * busybox-static, gcc): content-addressed cache, concurrent builders,
 * byte-for-byte reproducibility, cancellation.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { INIT_COMMON_DIGEST_KEY, INIT_COMMON_SOURCE } from '../../../images/lib/init-common.ts'
import { hasPvhEntry } from '../../../images/lib/pvh-kernel.ts'
import type { ProgressEvent } from '../../../core/progress.ts'

const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex')
const tmpCache = (t: { teardown: (fn: () => void) => void }): string => {
  const d = mkdtempSync(join(tmpdir(), 'sct-imgcache-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('build lands in <cache>/images/tiny-<id> and a second call uses the cache', async t => {
  const cacheDir = tmpCache(t)
  const events: ProgressEvent[] = []
  const img = await buildTinyImage({ cacheDir, onProgress: ev => events.push(ev) })
  t.match(img.id, /^[0-9a-f]{12}$/)
  t.equal(img.dir, join(cacheDir, 'images', `tiny-${img.id}`))
  t.ok(statSync(img.kernel).size > 1_000_000, 'kernel copied')
  // Debian's kernel has a PVH entry: the image carries it uncompressed for QEMU's direct boot.
  t.ok(img.pvh !== undefined && hasPvhEntry(readFileSync(img.pvh.kernel)), 'the uncompressed kernel is an ELF with a PVH entry')
  t.same(img.pvh !== undefined ? gunzipSync(readFileSync(img.pvh.gz)).equals(readFileSync(img.pvh.kernel)) : false, true, 'vmlinux.gz holds the same bytes')
  t.ok(events.some(e => e.phase === 'compile'), 'reported compiling the tools')
  t.equal(events.at(-1)?.phase, 'done')

  const initrd = gunzipSync(readFileSync(img.initrd))
  t.equal(initrd.subarray(0, 6).toString(), '070701', 'initrd is a gzip\'ed newc cpio')
  const listing = spawnSync('cpio', ['-t', '--quiet'], { input: initrd, encoding: 'utf8' })
  const files = new Set(listing.stdout.split('\n'))
  for (const f of ['init', 'bin/busybox', 'bin/sh', 'bin/memload', 'bin/netprobe', 'bin/l2fw', 'dev/console', 'lib/modules/virtio_net.ko', 'lib/modules/virtio_pci.ko',
    'lib/modules/8021q.ko', 'lib/modules/garp.ko', 'lib/modules/mrp.ko', 'lib/modules/stp.ko', 'lib/modules/llc.ko', 'etc/sc-modules',
    'lib/supercloud/init-common.sh']) {
    t.ok(files.has(f), `initrd contains ${f}`)
  }

  const manifest = JSON.parse(readFileSync(join(img.dir, 'manifest.json'), 'utf8')) as { inputs: Record<string, string> }
  t.equal(manifest.inputs[INIT_COMMON_DIGEST_KEY], sha(INIT_COMMON_SOURCE), 'the shared init fragment is an input of the id')

  const again: ProgressEvent[] = []
  const cached = await buildTinyImage({ cacheDir, onProgress: ev => again.push(ev) })
  t.same(cached, img, 'same result')
  t.same(again.map(e => e.phase), ['inputs', 'cached'], 'no rebuild')
  t.same(readdirSync(join(cacheDir, 'images')), [`tiny-${img.id}`], 'no temp dirs left behind')

  const help = spawnSync(img.tools.netprobe, ['--help'], { encoding: 'utf8' })
  t.match(help.stdout, /netprobe send <ipv4> <port>/, 'host copy of netprobe runs')
  t.match(spawnSync(img.tools.l2fw, ['--help'], { encoding: 'utf8' }).stdout, /usage: l2fw <if-a> <if-b>/, 'host copy of l2fw runs')
})

t.test('concurrent builders agree and leave one directory', async t => {
  const cacheDir = tmpCache(t)
  const [a, b, c] = await Promise.all([buildTinyImage({ cacheDir }), buildTinyImage({ cacheDir }), buildTinyImage({ cacheDir })])
  t.same(a, b)
  t.same(b, c)
  t.same(readdirSync(join(cacheDir, 'images')), [`tiny-${a.id}`])
})

t.test('reproducible: a forced rebuild elsewhere gives identical bytes', async t => {
  const one = await buildTinyImage({ cacheDir: tmpCache(t) })
  const two = await buildTinyImage({ cacheDir: tmpCache(t), force: true })
  t.equal(two.id, one.id)
  t.equal(sha(two.initrd), sha(one.initrd), 'initrd identical')
  t.equal(sha(two.kernel), sha(one.kernel), 'kernel identical')
})

t.test('force rebuilds over an existing image', async t => {
  const cacheDir = tmpCache(t)
  const first = await buildTinyImage({ cacheDir })
  const phases: string[] = []
  const second = await buildTinyImage({ cacheDir, force: true, onProgress: ev => phases.push(ev.phase) })
  t.same(second, first)
  t.ok(phases.includes('compile'), 'rebuilt')
  t.same(readdirSync(join(cacheDir, 'images')), [`tiny-${first.id}`], 'old copy removed')
})

t.test('an aborted build throws SC_CANCELLED and leaves nothing', async t => {
  const cacheDir = tmpCache(t)
  const ac = new AbortController()
  const p = buildTinyImage({ cacheDir, signal: ac.signal, onProgress: ev => { if (ev.phase === 'compile') ac.abort() } })
  await t.rejects(p, { code: 'SC_CANCELLED' })
  let left: string[] = []
  try { left = readdirSync(join(cacheDir, 'images')) } catch {}
  t.same(left, [], 'no partial image')
})
