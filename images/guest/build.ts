/**
 * Builds (or finds in the cache) the tiny guest image: the host's Debian kernel,
 * an initramfs with its virtio and 802.1Q modules, busybox, our init script and
 * the memload / netprobe / l2fw tools. The result is content-addressed: the id is a hash
 * of every input, so the same inputs always give the same directory and the
 * same bytes.
 */
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { throwIfAborted } from '../../core/errors.ts'
import { projectPath } from '../../core/root.ts'
import { buildKit, type KernelModule, progressReporter, sha256 } from '../lib/build-kit.ts'
import { cachedImage, type ImageBuildOptions, type ImageManifest, imageId } from '../lib/image-cache.ts'
import { INIT_COMMON_DIGEST_KEY, initCommonEntry, readInitCommon } from '../lib/init-common.ts'
import { initramfsEntries } from '../lib/initramfs.ts'
import { bzImagePayload, hasPvhEntry, NotABzImage } from '../lib/pvh-kernel.ts'
import { type CpioEntry, writeNewc } from './cpio.ts'
import { ImageBuildError } from './errors.ts'

export { defaultCacheDir } from '../lib/image-cache.ts'

const kit = buildKit('guest image build', (detail, cause) => new ImageBuildError(detail, cause))

/** Bump when the way the image is assembled changes (invalidates every cached image). */
export const RECIPE_VERSION = 3

/**
 * Modules loaded at boot (their dependencies are added from modules.dep).
 * 8021q (with garp, mrp, stp, llc) gives guests VLAN subinterfaces (`ip link add link eth0 name eth0.10 type vlan id 10`).
 */
export const GUEST_MODULES = ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_balloon', 'virtio_console', '8021q']

/** Tools compiled from images/guest/tools/<name>.c into /bin/<name>. */
export const GUEST_TOOLS = ['memload', 'netprobe', 'l2fw'] as const

/** The image goes to <cacheDir>/images/tiny-<id>/. */
export type BuildTinyImageOptions = ImageBuildOptions

export interface TinyImage {
  /** bzImage to pass to QEMU's -kernel. */
  kernel: string
  /** gzip'ed newc initramfs for -initrd. */
  initrd: string
  /**
   * The same kernel uncompressed, an ELF with a PVH entry, for QEMU hosts: QEMU boots it
   * directly, without the firmware's real-mode path and the kernel's self-decompression
   * (a tiny guest under TCG reaches its ready line in about half the time). `gz` is what is
   * uploaded to hosts (gzip'ed: 13 of the ELF's 63 MiB), unpacked there. Absent when the
   * host kernel has no PVH entry; QEMU then boots `kernel`.
   */
  pvh?: { kernel: string, gz: string }
  /** 12 hex digits of the sha256 over all inputs. */
  id: string
  /** The image directory (tiny-<id>). */
  dir: string
  /** Kernel version the image was built from, e.g. 6.1.0-56-amd64. */
  kernelVersion: string
  /** Static host-runnable copies of the guest tools (e.g. netprobe on the host side of a test). */
  tools: { memload: string, netprobe: string, l2fw: string }
}

const HERE = projectPath('images', 'guest')
const INIT_SCRIPT = join(HERE, 'init.sh')
const TOOLS_DIR = join(HERE, 'tools')
const CFLAGS = ['-static', '-O2', '-s', '-Wall']

interface Inputs {
  kernelVersion: string
  kernelPath: string
  kernel: Buffer
  modules: KernelModule[]
  busybox: Buffer
  init: Buffer
  /** images/lib/init-common.sh, which init sources. */
  initCommon: Buffer
  tools: Array<{ name: string, source: Buffer, path: string }>
  gccVersion: string
}

async function gatherInputs (signal?: AbortSignal): Promise<Inputs> {
  const { kernelVersion, kernelPath, kernel } = await kit.hostKernel()
  const modules = await kit.kernelModules(kernelVersion, GUEST_MODULES, signal)
  const tools: Inputs['tools'] = []
  for (const name of GUEST_TOOLS) {
    const path = join(TOOLS_DIR, `${name}.c`)
    tools.push({ name, path, source: await kit.readInput(path, 'tool source') })
  }
  const gccVersion = (await kit.run('gcc', ['--version'], { signal })).toString().split('\n')[0] ?? ''
  return {
    kernelVersion,
    kernelPath,
    kernel,
    modules,
    busybox: await kit.busybox(),
    init: await kit.readInput(INIT_SCRIPT, 'init script'),
    initCommon: await readInitCommon(kit),
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
    init: sha256(inp.init),
    [INIT_COMMON_DIGEST_KEY]: sha256(inp.initCommon)
  }
  for (const m of inp.modules) d[`module:${m.path}`] = sha256(m.data)
  for (const t of inp.tools) d[`tool:${t.name}.c`] = sha256(t.source)
  return d
}

function describe (dir: string, m: ImageManifest): { image: TinyImage, files: string[] } {
  const pvh = existsSync(join(dir, 'vmlinux.gz')) ? { kernel: join(dir, 'vmlinux'), gz: join(dir, 'vmlinux.gz') } : undefined
  const image: TinyImage = {
    kernel: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.img'),
    ...(pvh !== undefined ? { pvh } : {}),
    id: m.id,
    dir,
    kernelVersion: m.kernelVersion,
    tools: { memload: join(dir, 'bin', 'memload'), netprobe: join(dir, 'bin', 'netprobe'), l2fw: join(dir, 'bin', 'l2fw') }
  }
  return { image, files: [image.kernel, image.initrd, ...(pvh !== undefined ? [pvh.kernel, pvh.gz] : []), ...Object.values(image.tools)] }
}

function rootfsEntries (inp: Inputs, toolBinaries: Map<string, Buffer>, applets: string[]): CpioEntry[] {
  return initramfsEntries({
    dirs: ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc', 'root', 'mnt', 'var', 'lib/modules'],
    init: inp.init,
    busybox: inp.busybox,
    own: [...toolBinaries].map(([name, bin]) => ({ type: 'file', path: `bin/${name}`, data: bin, mode: 0o755 })),
    applets,
    modules: inp.modules,
    extra: [
      initCommonEntry(inp.initCommon),
      { type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
      { type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\n') },
      { type: 'file', path: 'etc/sc-image', data: Buffer.from(`kernel ${inp.kernelVersion}\nrecipe ${RECIPE_VERSION}\n`) }
    ]
  })
}

/**
 * Returns the tiny guest image, building it into the cache when missing.
 * Concurrent callers are safe: each builds into its own temp dir and the first
 * rename wins; the others use the winner's identical result.
 */
export async function buildTinyImage (opts: BuildTinyImageOptions = {}): Promise<TinyImage> {
  const { signal } = opts
  const progress = progressReporter('image tiny', opts.onProgress)
  throwIfAborted(signal, kit.what)
  progress('inputs', 'hashing kernel, modules, busybox and sources', 0)
  const inp = await gatherInputs(signal)
  const digests = inputDigests(inp)
  const manifest: ImageManifest = { id: imageId(digests), recipeVersion: RECIPE_VERSION, kernelVersion: inp.kernelVersion, modules: inp.modules.map(m => m.name), inputs: digests }
  return await cachedImage({
    kit,
    name: 'tiny',
    opts,
    progress,
    manifest,
    describe,
    assemble: async tmp => {
      await mkdir(join(tmp, 'bin'))
      const toolBinaries = new Map<string, Buffer>()
      for (const [i, t] of inp.tools.entries()) {
        throwIfAborted(signal, kit.what)
        progress('compile', `gcc -static ${t.name}.c`, 0.1 + 0.3 * i / inp.tools.length)
        const out = join(tmp, 'bin', t.name)
        await kit.run('gcc', [...CFLAGS, '-o', out, t.path], { cwd: tmp, signal })
        toolBinaries.set(t.name, await readFile(out))
      }
      throwIfAborted(signal, kit.what)
      progress('initramfs', `packing busybox, ${inp.modules.length} modules and init`, 0.5)
      const cpio = writeNewc(rootfsEntries(inp, toolBinaries, await kit.busyboxApplets(signal)))
      await writeFile(join(tmp, 'initrd.img'), gzipSync(cpio, { level: 9 }))
      await copyFile(inp.kernelPath, join(tmp, 'vmlinuz'))
      await chmod(join(tmp, 'vmlinuz'), 0o644)
      progress('kernel', 'unpacking the kernel for a direct PVH boot', 0.8)
      const elf = await uncompressedKernel(inp.kernel, signal)
      if (elf !== undefined) {
        await writeFile(join(tmp, 'vmlinux'), elf, { mode: 0o644 })
        await writeFile(join(tmp, 'vmlinux.gz'), gzipSync(elf, { level: 1 }), { mode: 0o644 })
      }
    }
  })
}

/** The ELF inside a bzImage when it has a PVH entry, else undefined (QEMU boots the bzImage then). */
async function uncompressedKernel (bzImage: Buffer, signal?: AbortSignal): Promise<Buffer | undefined> {
  let payload
  try { payload = bzImagePayload(bzImage) } catch (err) { if (err instanceof NotABzImage) return undefined; throw err }
  const opts = signal !== undefined ? { input: payload.data, signal } : { input: payload.data }
  const elf = payload.format === 'gzip'
    ? gunzipSync(payload.data)
    : payload.format === 'xz'
      ? await kit.run('xz', ['-dc', '--single-stream'], opts)
      : payload.format === 'zstd' ? await kit.run('zstd', ['-dc'], opts) : undefined
  return elf !== undefined && hasPvhEntry(elf) ? elf : undefined
}

/** The kernel a QEMU guest of this image boots: the uncompressed one (direct PVH boot) when there is one. */
export function qemuKernel (img: TinyImage): string {
  return img.pvh?.kernel ?? img.kernel
}
