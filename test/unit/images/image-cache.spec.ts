import t, { type Test } from 'tap'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { CancelledError } from '../../../core/errors.ts'
import { buildKit } from '../../../images/lib/build-kit.ts'
import { cachedImage, type ImageManifest, imageId } from '../../../images/lib/image-cache.ts'

class TestBuildError extends Error {}

async function rejection (p: Promise<unknown>): Promise<unknown> {
  try { await p } catch (err) { return err }
  throw new Error('expected a rejection')
}
const kit = buildKit('test image build', detail => new TestBuildError(detail))

const describe = (dir: string, m: ImageManifest): { image: { dir: string, id: string }, files: string[] } =>
  ({ image: { dir, id: m.id }, files: [join(dir, 'payload')] })

function manifest (inputs: Record<string, string>): ImageManifest {
  return { id: imageId(inputs), recipeVersion: 1, kernelVersion: '6.1.0-1-amd64', modules: [], inputs }
}

function tmpCache (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'sc-image-cache-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('imageId: 12 hex digits, independent of key order, changes with any digest', async t => {
  const a = imageId({ b: '2', a: '1' })
  t.match(a, /^[0-9a-f]{12}$/)
  t.equal(imageId({ a: '1', b: '2' }), a)
  t.not(imageId({ a: '1', b: '3' }), a)
  t.not(imageId({ a: '1', c: '2' }), a)
})

t.test('builds once, then reuses the complete directory; force rebuilds in place', async t => {
  const cacheDir = tmpCache(t)
  const m = manifest({ x: '1' })
  let assembled = 0
  const events: string[] = []
  const build = async (force: boolean, payload: string): Promise<{ dir: string, id: string }> => await cachedImage({
    kit,
    name: 'test',
    opts: { cacheDir, force },
    progress: phase => events.push(phase),
    manifest: m,
    describe,
    assemble: async tmp => { assembled++; await writeFile(join(tmp, 'payload'), payload) }
  })
  const first = await build(false, 'one')
  t.equal(first.dir, join(cacheDir, 'images', `test-${m.id}`))
  t.same(JSON.parse(readFileSync(join(first.dir, 'manifest.json'), 'utf8')), m)
  t.same(events, ['install', 'done'])
  events.length = 0
  t.same(await build(false, 'two'), first)
  t.equal(assembled, 1, 'the cached copy is used')
  t.same(events, ['cached'])
  t.equal(readFileSync(join(first.dir, 'payload'), 'utf8'), 'one')
  await build(true, 'three')
  t.equal(assembled, 2)
  t.equal(readFileSync(join(first.dir, 'payload'), 'utf8'), 'three', 'a forced build replaces the copy')
  t.same(readdirSync(join(cacheDir, 'images')), [`test-${m.id}`], 'no temp or aside directories left')
})

t.test('an incomplete leftover (no manifest, or a file missing) is replaced', async t => {
  const cacheDir = tmpCache(t)
  const m = manifest({ y: '1' })
  const dir = join(cacheDir, 'images', `test-${m.id}`)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'junk'), 'half a build')
  const img = await cachedImage({ kit, name: 'test', opts: { cacheDir }, progress: () => {}, manifest: m, describe, assemble: async tmp => await writeFile(join(tmp, 'payload'), 'ok') })
  t.equal(img.dir, dir)
  t.notOk(existsSync(join(dir, 'junk')))
  t.same(readdirSync(join(cacheDir, 'images')), [`test-${m.id}`])
})

t.test('a failed or cancelled assembly leaves nothing behind and keeps its error', async t => {
  const cacheDir = tmpCache(t)
  const m = manifest({ z: '1' })
  const err = await rejection(cachedImage({ kit, name: 'test', opts: { cacheDir }, progress: () => {}, manifest: m, describe, assemble: async () => { throw new TestBuildError('boom') } }))
  t.type(err, TestBuildError)
  t.match(err, { message: 'boom' })
  t.same(readdirSync(join(cacheDir, 'images')), [])
  const ac = new AbortController()
  t.type(await rejection(cachedImage({ kit, name: 'test', opts: { cacheDir, signal: ac.signal }, progress: () => {}, manifest: m, describe, assemble: async tmp => { await writeFile(join(tmp, 'payload'), 'x'); ac.abort() } })), CancelledError)
  t.same(readdirSync(join(cacheDir, 'images')), [])
})

t.test('an assembly that misses a file the recipe lists is the recipe error', async t => {
  const cacheDir = tmpCache(t)
  const err = await rejection(cachedImage({ kit, name: 'test', opts: { cacheDir }, progress: () => {}, manifest: manifest({ w: '1' }), describe, assemble: async () => {} }))
  t.type(err, TestBuildError)
  t.match(err, { message: /incomplete after install/ })
})
