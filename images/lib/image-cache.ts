/**
 * The content-addressed image cache every recipe builds into: <cache>/images/<name>-<id>/,
 * where the id hashes every input. A directory is complete when its manifest.json (written
 * last) names the id and every file the recipe lists is there; a complete one is reused, and a
 * build happens in a temp dir that is renamed into place, so concurrent builders never see or
 * leave half an image.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { throwIfAborted } from '../../core/errors.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { type BuildKit, type Progress, sha256 } from './build-kit.ts'

/** What a recipe's build function takes besides its own switches. */
export interface ImageBuildOptions extends OperationOptions {
  /** Cache root; the image goes to <cacheDir>/images/<name>-<id>/. Default $SUPERCLOUD_CACHE or ~/.cache/supercloud. */
  cacheDir?: string
  /** Rebuild even when a complete cached image exists. */
  force?: boolean
}

/** The fields every image's manifest.json has (a recipe may add its own). */
export interface ImageManifest {
  id: string
  recipeVersion: number
  kernelVersion: string
  modules: string[]
  /** Input name -> digest; the id hashes these. */
  inputs: Record<string, string>
}

export function defaultCacheDir (): string {
  const env = process.env.SUPERCLOUD_CACHE
  return env !== undefined && env !== '' ? env : join(homedir(), '.cache', 'supercloud')
}

/** 12 hex digits of the sha256 over the sorted `name=digest` lines. */
export function imageId (digests: Record<string, string>): string {
  const lines = Object.keys(digests).sort().map(k => `${k}=${digests[k]}`)
  return sha256(lines.join('\n')).slice(0, 12)
}

/** The recipe's view of an image directory: what the caller gets, and the files that must exist. */
export type DescribeImage<M extends ImageManifest, T> = (dir: string, manifest: M) => { image: T, files: string[] }

/** The image in `dir` when it is complete for `id`, else undefined. */
export async function completeImage<M extends ImageManifest, T> (kit: BuildKit, dir: string, id: string, describe: DescribeImage<M, T>): Promise<T | undefined> {
  let manifest: M
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as M
  } catch {
    return undefined
  }
  if (manifest.id !== id) return undefined
  const { image, files } = describe(dir, manifest)
  for (const f of files) {
    if (!(await kit.exists(f))) return undefined
  }
  return image
}

export interface CachedImageBuild<M extends ImageManifest, T> {
  kit: BuildKit
  /** Directory name prefix: "tiny" gives <cache>/images/tiny-<id>/. */
  name: string
  opts: ImageBuildOptions
  progress: Progress
  /** Written last, as manifest.json; its id (imageId of its inputs) names the directory. */
  manifest: M
  describe: DescribeImage<M, T>
  /** Writes the image's files into the (existing, empty) temp directory `tmp`. */
  assemble: (tmp: string) => Promise<void>
}

/**
 * Returns the cached image for `manifest.id`, or assembles it into a temp dir and installs
 * that. Concurrent callers are safe: the first rename wins and the others use the winner's
 * identical result.
 */
export async function cachedImage<M extends ImageManifest, T> (b: CachedImageBuild<M, T>): Promise<T> {
  const { kit, opts, progress, manifest: { id } } = b
  const imagesDir = join(opts.cacheDir ?? defaultCacheDir(), 'images')
  const dir = join(imagesDir, `${b.name}-${id}`)
  if (opts.force !== true) {
    const cached = await completeImage(kit, dir, id, b.describe)
    if (cached !== undefined) {
      progress('cached', `using cached image ${dir}`, 1)
      return cached
    }
  }

  await mkdir(imagesDir, { recursive: true })
  const tmp = join(imagesDir, `.tmp-${b.name}-${id}-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(tmp, { recursive: true })
    await b.assemble(tmp)
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(b.manifest, null, 2) + '\n')
    throwIfAborted(opts.signal, kit.what)
    progress('install', `installing ${dir}`, 0.9)
    await kit.install(tmp, dir, opts.force === true, async () => (await completeImage(kit, dir, id, b.describe)) !== undefined)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  const img = await completeImage(kit, dir, id, b.describe)
  if (img === undefined) throw kit.fail(`image directory ${dir} is incomplete after install`)
  progress('done', `built ${dir}`, 1)
  return img
}
