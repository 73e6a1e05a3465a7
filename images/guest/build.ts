/**
 * Builds (or finds in the cache) the tiny guest image: the host's Debian kernel,
 * an initramfs with its virtio and 802.1Q modules, busybox, our init script and
 * the memload / netprobe / l2fw tools. The result is content-addressed: the id is a hash
 * of every input, so the same inputs always give the same directory and the
 * same bytes.
 */
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile, chmod } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { throwIfAborted } from '../../blanket-manager/errors.ts'
import type { OperationOptions, ProgressEvent } from '../../blanket-manager/progress.ts'
import { type CpioEntry, writeNewc } from './cpio.ts'
import { ImageBuildError } from './errors.ts'
import { newestKernelVersion, parseModulesBuiltin, parseModulesDep, resolveModules, UnknownModuleError } from './modules.ts'
import { buildKit } from '../lib/build-kit.ts'

const kit = buildKit('guest image build', (detail, cause) => new ImageBuildError(detail, cause))
const { sha256, exists, readInput, run, decompressModule } = kit

/** Bump when the way the image is assembled changes (invalidates every cached image). */
export const RECIPE_VERSION = 1

/**
 * Modules loaded at boot (their dependencies are added from modules.dep).
 * 8021q (with garp, mrp, stp, llc) gives guests VLAN subinterfaces (`ip link add link eth0 name eth0.10 type vlan id 10`).
 */
export const GUEST_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_balloon', 'virtio_console', '8021q']

/** Tools compiled from images/guest/tools/<name>.c into /bin/<name>. */
export const GUEST_TOOLS = ['memload', 'netprobe', 'l2fw'] as const

export interface BuildTinyImageOptions extends OperationOptions {
  /** Cache root; the image goes to <cacheDir>/images/tiny-<id>/. Default $SUPERCLOUD_CACHE or ~/.cache/supercloud. */
  cacheDir?: string
  /** Rebuild even when a complete cached image exists. */
  force?: boolean
}

export interface TinyImage {
  /** bzImage to pass to QEMU's -kernel. */
  kernel: string
  /** gzip'ed newc initramfs for -initrd. */
  initrd: string
  /** 12 hex digits of the sha256 over all inputs. */
  id: string
  /** The image directory (tiny-<id>). */
  dir: string
  /** Kernel version the image was built from, e.g. 6.1.0-56-amd64. */
  kernelVersion: string
  /** Static host-runnable copies of the guest tools (e.g. netprobe on the host side of a test). */
  tools: { memload: string, netprobe: string, l2fw: string }
}

interface Manifest {
  id: string
  recipeVersion: number
  kernelVersion: string
  modules: string[]
  inputs: Record<string, string>
}

const HERE = dirname(fileURLToPath(import.meta.url))
const BOOT_DIR = '/boot'
const MODULES_ROOT = '/lib/modules'
const BUSYBOX = '/bin/busybox'
const INIT_SCRIPT = join(HERE, 'init.sh')
const TOOLS_DIR = join(HERE, 'tools')
const CFLAGS = ['-static', '-O2', '-s', '-Wall']

export function defaultCacheDir (): string {
  const env = process.env.SUPERCLOUD_CACHE
  return env !== undefined && env !== '' ? env : join(homedir(), '.cache', 'supercloud')
}






interface Inputs {
  kernelVersion: string
  kernelPath: string
  kernel: Buffer
  modules: Array<{ name: string, path: string, data: Buffer }>
  busybox: Buffer
  init: Buffer
  tools: Array<{ name: string, source: Buffer, path: string }>
  gccVersion: string
}

async function gatherInputs (signal?: AbortSignal): Promise<Inputs> {
  let bootFiles: string[]
  try { bootFiles = await readdir(BOOT_DIR) } catch (err) { throw new ImageBuildError(`cannot list ${BOOT_DIR}`, err) }
  const kernelVersion = newestKernelVersion(bootFiles)
  if (kernelVersion === undefined) throw new ImageBuildError(`no vmlinuz-* in ${BOOT_DIR} (install linux-image-amd64)`)
  const kernelPath = join(BOOT_DIR, `vmlinuz-${kernelVersion}`)
  const modDir = join(MODULES_ROOT, kernelVersion)
  const depText = (await readInput(join(modDir, 'modules.dep'), 'module index')).toString('utf8')
  const builtinText = await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')
  let resolved: Array<{ name: string, path: string }>
  try {
    resolved = resolveModules(parseModulesDep(depText), GUEST_MODULES, parseModulesBuiltin(builtinText))
  } catch (err) {
    if (err instanceof UnknownModuleError) throw new ImageBuildError(`${err.message} for kernel ${kernelVersion}`, err)
    throw err
  }
  const modules: Inputs['modules'] = []
  for (const m of resolved) {
    throwIfAborted(signal, 'guest image build')
    const raw = await readInput(join(modDir, m.path), 'kernel module')
    modules.push({ name: m.name, path: m.path, data: await decompressModule(m.path, raw, signal) })
  }
  const tools: Inputs['tools'] = []
  for (const name of GUEST_TOOLS) {
    const path = join(TOOLS_DIR, `${name}.c`)
    tools.push({ name, path, source: await readInput(path, 'tool source') })
  }
  const gccVersion = (await run('gcc', ['--version'], { signal })).toString().split('\n')[0] ?? ''
  return {
    kernelVersion,
    kernelPath,
    kernel: await readInput(kernelPath, 'kernel'),
    modules,
    busybox: await readInput(BUSYBOX, 'busybox (install busybox-static)'),
    init: await readInput(INIT_SCRIPT, 'init script'),
    tools,
    gccVersion
  }
}

function inputDigests (inp: Inputs): Record<string, string> {
  const d: Record<string, string> = {
    recipe: String(RECIPE_VERSION),
    gcc: inp.gccVersion,
    cflags: CFLAGS.join(' '),
    [`kernel:${inp.kernelVersion}`]: sha256(inp.kernel),
    busybox: sha256(inp.busybox),
    init: sha256(inp.init)
  }
  for (const m of inp.modules) d[`module:${m.path}`] = sha256(m.data)
  for (const t of inp.tools) d[`tool:${t.name}.c`] = sha256(t.source)
  return d
}

function imageId (digests: Record<string, string>): string {
  const lines = Object.keys(digests).sort().map(k => `${k}=${digests[k]}`)
  return sha256(lines.join('\n')).slice(0, 12)
}

function resultFor (dir: string, id: string, kernelVersion: string): TinyImage {
  return {
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    id,
    dir,
    kernelVersion,
    tools: { memload: join(dir, 'bin', 'memload'), netprobe: join(dir, 'bin', 'netprobe'), l2fw: join(dir, 'bin', 'l2fw') }
  }
}

/** A cached image is complete when its manifest (written last) names the id and every file is there. */
async function completeImage (dir: string, id: string): Promise<TinyImage | undefined> {
  let manifest: Manifest
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest
  } catch {
    return undefined
  }
  if (manifest.id !== id) return undefined
  const img = resultFor(dir, id, manifest.kernelVersion)
  for (const f of [img.kernel, img.initrd, ...Object.values(img.tools)]) {
    if (!(await exists(f))) return undefined
  }
  return img
}

function rootfsEntries (inp: Inputs, toolBinaries: Map<string, Buffer>, applets: string[]): CpioEntry[] {
  const entries: CpioEntry[] = []
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc', 'root', 'mnt', 'var', 'lib/modules']) {
    entries.push({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 })
  }
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 })
  entries.push({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 })
  entries.push({ type: 'file', path: 'init', data: inp.init, mode: 0o755 })
  entries.push({ type: 'file', path: 'bin/busybox', data: inp.busybox, mode: 0o755 })
  const taken = new Set(['bin/busybox', 'init', 'linuxrc'])
  for (const [name, bin] of toolBinaries) {
    entries.push({ type: 'file', path: `bin/${name}`, data: bin, mode: 0o755 })
    taken.add(`bin/${name}`)
  }
  for (const a of applets) {
    const p = a.replace(/^\/+/, '')
    if (p === '' || taken.has(p)) continue
    taken.add(p)
    entries.push({ type: 'symlink', path: p, target: '/bin/busybox' })
  }
  for (const m of inp.modules) entries.push({ type: 'file', path: `lib/modules/${m.name}.ko`, data: m.data })
  entries.push({ type: 'file', path: 'etc/sc-modules', data: Buffer.from(inp.modules.map(m => m.name).join('\n') + '\n') })
  entries.push({ type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') })
  entries.push({ type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\n') })
  entries.push({ type: 'file', path: 'etc/sc-image', data: Buffer.from(`kernel ${inp.kernelVersion}\nrecipe ${RECIPE_VERSION}\n`) })
  return entries
}

/**
 * Returns the tiny guest image, building it into the cache when missing.
 * Concurrent callers are safe: each builds into its own temp dir and the first
 * rename wins; the others use the winner's identical result.
 */
export async function buildTinyImage (opts: BuildTinyImageOptions = {}): Promise<TinyImage> {
  const { signal } = opts
  const progress = (phase: string, message: string, fraction?: number): void => {
    const ev: ProgressEvent = { subject: 'image tiny', phase, message }
    if (fraction !== undefined) ev.fraction = fraction
    opts.onProgress?.(ev)
  }
  throwIfAborted(signal, 'guest image build')
  progress('inputs', 'hashing kernel, modules, busybox and sources', 0)
  const inp = await gatherInputs(signal)
  const digests = inputDigests(inp)
  const id = imageId(digests)
  const imagesDir = join(opts.cacheDir ?? defaultCacheDir(), 'images')
  const dir = join(imagesDir, `tiny-${id}`)

  if (opts.force !== true) {
    const cached = await completeImage(dir, id)
    if (cached !== undefined) {
      progress('cached', `using cached image ${dir}`, 1)
      return cached
    }
  }

  await mkdir(imagesDir, { recursive: true })
  const tmp = join(imagesDir, `.tmp-tiny-${id}-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(join(tmp, 'bin'), { recursive: true })
    const toolBinaries = new Map<string, Buffer>()
    for (const [i, t] of inp.tools.entries()) {
      throwIfAborted(signal, 'guest image build')
      progress('compile', `gcc -static ${t.name}.c`, 0.1 + 0.3 * i / inp.tools.length)
      const out = join(tmp, 'bin', t.name)
      await run('gcc', [...CFLAGS, '-o', out, t.path], { cwd: tmp, signal })
      toolBinaries.set(t.name, await readFile(out))
    }
    throwIfAborted(signal, 'guest image build')
    progress('initramfs', `packing busybox, ${inp.modules.length} modules and init`, 0.5)
    const applets = (await run(BUSYBOX, ['--list-full'], { signal })).toString().split('\n').map(s => s.trim()).filter(s => s !== '')
    const cpio = writeNewc(rootfsEntries(inp, toolBinaries, applets))
    const initrd = gzipSync(cpio, { level: 9 })
    await writeFile(join(tmp, 'initrd.img'), initrd)
    await copyFile(inp.kernelPath, join(tmp, 'vmlinuz'))
    await chmod(join(tmp, 'vmlinuz'), 0o644)
    const manifest: Manifest = { id, recipeVersion: RECIPE_VERSION, kernelVersion: inp.kernelVersion, modules: inp.modules.map(m => m.name), inputs: digests }
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
    throwIfAborted(signal, 'guest image build')
    progress('install', `installing ${dir}`, 0.9)
    await kit.install(tmp, dir, opts.force === true, async () => (await completeImage(dir, id)) !== undefined)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  const img = await completeImage(dir, id)
  if (img === undefined) throw new ImageBuildError(`image directory ${dir} is incomplete after install`)
  progress('done', `built ${dir}`, 1)
  return img
}

