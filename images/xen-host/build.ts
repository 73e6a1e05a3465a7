/**
 * Builds (or finds in the cache) the Xen host image: Debian's Xen hypervisor
 * (unpacked to the multiboot ELF QEMU's -kernel loads), the host's generic Debian
 * kernel as PV dom0, and an initramfs-only root with busybox, the Xen control modules,
 * the xl toolstack with xenstored / xenconsoled, and OpenSSH's sshd. Dynamically linked
 * binaries are copied with their `ldd` closure at their original paths.
 *
 * Content-addressed like images/guest/build.ts: the id hashes every input, so the same
 * inputs give the same directory (<cache>/images/xen-host-<id>/) and the same bytes.
 * Per-launch secrets (ssh host key, authorized_keys) are NOT in the image: the launcher
 * appends them as a second cpio archive (drivers/local/xen-host-args.ts).
 */
import { randomBytes } from 'node:crypto'
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gunzipSync, gzipSync } from 'node:zlib'
import { throwIfAborted } from '../../blanket-manager/errors.ts'
import type { OperationOptions, ProgressEvent } from '../../blanket-manager/progress.ts'
import { type CpioEntry, writeNewc } from '../guest/cpio.ts'
import { defaultCacheDir } from '../guest/build.ts'
import { newestKernelVersion, parseModulesBuiltin, parseModulesDep, resolveModules, UnknownModuleError } from '../guest/modules.ts'
import { MissingLibraryError, parseLdd, unionSorted } from './closure.ts'
import { XenImageBuildError } from './errors.ts'
import { XEN_GUEST_MODULE_DIR, XEN_GUEST_MODULES } from './guest-overlay.ts'
import { buildKit } from '../lib/build-kit.ts'

const kit = buildKit('Xen host image build', (detail, cause) => new XenImageBuildError(detail, cause))
const { sha256, exists, readInput, run, decompressModule } = kit

/** Bump when the way the image is assembled changes (invalidates every cached image). */
export const RECIPE_VERSION = 2

/** Debian's Xen version whose tools go into the image (xen-utils-<version>). */
export const XEN_TOOLS_VERSION = '4.17'

/** Modules loaded at boot, dependencies first (resolved from modules.dep). */
export const DOM0_MODULES = [
  'xen_privcmd', 'xenfs', 'xen_evtchn', 'xen_gntdev', 'xen_gntalloc', 'xen_netback', 'xen_blkback',
  'bridge', 'tun', 'virtio_pci', 'virtio_net',
  // VirtualWire on a Xen host: connectors (kernel VXLAN) and the endpoint interface (FUSE).
  'vxlan', 'fuse'
]

const XEN_BIN = `/usr/lib/xen-${XEN_TOOLS_VERSION}/bin`
/** Binaries copied (with their library closure) at their own path. */
export const DOM0_BINARIES = [
  `${XEN_BIN}/xl`, `${XEN_BIN}/xenstored`, `${XEN_BIN}/xenconsoled`, `${XEN_BIN}/xenconsole`,
  `${XEN_BIN}/xen-init-dom0`, `${XEN_BIN}/libxl-save-helper`,
  '/usr/bin/xenstore',
  '/usr/sbin/sshd', '/usr/lib/openssh/sftp-server',
  // Guest consoles as unix sockets (drivers/xen: `xl console` behind a socat listener).
  '/usr/bin/socat',
  // iproute2 (the host agent makes taps with `ip tuntap`, which busybox's ip lacks; VirtualWire
  // sets VXLAN forwarding entries with `bridge fdb`).
  '/usr/bin/ip', '/usr/sbin/bridge',
  // The Blanket bootstrap starts its daemons with `setsid nohup` (busybox has no nohup).
  '/usr/bin/nohup'
]
/**
 * Libraries loaded with dlopen (so not in any ldd closure): glibc needs libgcc_s for
 * pthread_cancel (xl create); the VirtualWire endpoint manager's fuse-native addon links libfuse 2.
 */
export const DOM0_DLOPENED = ['/lib/x86_64-linux-gnu/libgcc_s.so.1', '/lib/x86_64-linux-gnu/libfuse.so.2']
/** xl's configuration: dom0 has fixed memory (dom0_mem=...,max:...), so xl never balloons it. */
export const XL_CONF = 'autoballoon="off"\n'
/** Convenience names on PATH, as symlinks (Debian's own are a version-selecting wrapper script). */
const DOM0_SYMLINKS: Record<string, string> = {
  'bin/ip': '/usr/bin/ip',
  'sbin/ip': '/usr/bin/ip',
  'usr/sbin/xl': `${XEN_BIN}/xl`,
  'usr/sbin/xenstored': `${XEN_BIN}/xenstored`,
  'usr/sbin/xenconsoled': `${XEN_BIN}/xenconsoled`,
  ...Object.fromEntries(['read', 'write', 'ls', 'list', 'rm', 'exists', 'chmod', 'watch'].map(c => [`usr/bin/xenstore-${c}`, '/usr/bin/xenstore']))
}

/** sshd for the controller: root by key only, SFTP and unix-socket forwarding on. */
export const SSHD_CONFIG = [
  'Port 22',
  'HostKey /etc/ssh/ssh_host_ed25519_key',
  'PermitRootLogin prohibit-password',
  'PubkeyAuthentication yes',
  'PasswordAuthentication no',
  'KbdInteractiveAuthentication no',
  'UsePAM no',
  'UseDNS no',
  'PrintMotd no',
  'PidFile /run/sshd.pid',
  'AuthorizedKeysFile /root/.ssh/authorized_keys',
  'AllowStreamLocalForwarding yes',
  'AllowTcpForwarding yes',
  'Subsystem sftp /usr/lib/openssh/sftp-server',
  ''
].join('\n')

export { XEN_GUEST_MODULE_DIR }

export interface BuildXenHostImageOptions extends OperationOptions {
  /**
   * Also ship node (`command -v node`, with its library closure) for the host agent. Makes
   * the initramfs ~30 MB bigger (a different image id); the `local` Xen host flavour needs it.
   */
  withNode?: boolean
  /** Cache root; the image goes to <cacheDir>/images/xen-host-<id>/. Default $SUPERCLOUD_CACHE or ~/.cache/supercloud. */
  cacheDir?: string
  /** Rebuild even when a complete cached image exists. */
  force?: boolean
}

export interface XenHostImage {
  /** Xen hypervisor, multiboot ELF for QEMU's -kernel. */
  xen: string
  /** dom0 kernel (first multiboot module). */
  kernel: string
  /** gzip'ed newc initramfs (second multiboot module, after the per-launch keys are appended). */
  initrd: string
  id: string
  dir: string
  kernelVersion: string
  /** e.g. 4.17 (from /boot/xen-<version>-amd64.gz). */
  xenVersion: string
}

interface Manifest {
  id: string
  recipeVersion: number
  kernelVersion: string
  xenVersion: string
  modules: string[]
  inputs: Record<string, string>
}

const HERE = dirname(fileURLToPath(import.meta.url))
const BOOT_DIR = '/boot'
const MODULES_ROOT = '/lib/modules'
const BUSYBOX = '/bin/busybox'
const INIT_SCRIPT = join(HERE, 'init.sh')
const VIF_SCRIPT = join(HERE, 'vif-bridge.sh')






/** The newest /boot/xen-<version>-amd64.gz, e.g. { version: '4.17', path }. */
export function newestXen (bootFiles: string[]): { version: string, file: string } | undefined {
  const found = bootFiles
    .map(f => /^xen-(\d+\.\d+)-amd64\.gz$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map(m => ({ version: m[1] ?? '', file: m[0] }))
  found.sort((a, b) => {
    const [a1, a2] = a.version.split('.').map(Number)
    const [b1, b2] = b.version.split('.').map(Number)
    return (a1 ?? 0) - (b1 ?? 0) || (a2 ?? 0) - (b2 ?? 0)
  })
  return found.at(-1)
}

interface Inputs {
  kernelVersion: string
  kernelPath: string
  kernel: Buffer
  xenVersion: string
  xenGz: Buffer
  modules: Array<{ name: string, path: string, data: Buffer }>
  busybox: Buffer
  init: Buffer
  vifScript: Buffer
  /** xen_netfront / xen_blkfront (+ deps) for guests, dependencies first. */
  guestModules: Array<{ name: string, path: string, data: Buffer }>
  /** Binaries and their libraries, by absolute path (sorted). */
  files: Array<{ path: string, data: Buffer, mode: number }>
}

async function findNode (): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(':').filter(d => d !== '')) {
    if (await exists(join(dir, 'node'))) return join(dir, 'node')
  }
  return process.execPath
}

async function gatherInputs (signal?: AbortSignal, withNode = false): Promise<Inputs> {
  let bootFiles: string[]
  try { bootFiles = await readdir(BOOT_DIR) } catch (err) { throw new XenImageBuildError(`cannot list ${BOOT_DIR}`, err) }
  const kernelVersion = newestKernelVersion(bootFiles)
  if (kernelVersion === undefined) throw new XenImageBuildError(`no vmlinuz-* in ${BOOT_DIR} (install linux-image-amd64)`)
  const xen = newestXen(bootFiles)
  if (xen === undefined) throw new XenImageBuildError(`no xen-*-amd64.gz in ${BOOT_DIR} (install xen-hypervisor-${XEN_TOOLS_VERSION}-amd64)`)
  const kernelPath = join(BOOT_DIR, `vmlinuz-${kernelVersion}`)
  const modDir = join(MODULES_ROOT, kernelVersion)
  const depText = (await readInput(join(modDir, 'modules.dep'), 'module index')).toString('utf8')
  const builtinText = await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')
  let resolved: Array<{ name: string, path: string }>
  try {
    resolved = resolveModules(parseModulesDep(depText), DOM0_MODULES, parseModulesBuiltin(builtinText))
  } catch (err) {
    if (err instanceof UnknownModuleError) throw new XenImageBuildError(`${err.message} for kernel ${kernelVersion}`, err)
    throw err
  }
  const modules: Inputs['modules'] = []
  for (const m of resolved) {
    throwIfAborted(signal, 'Xen host image build')
    const raw = await readInput(join(modDir, m.path), 'kernel module')
    modules.push({ name: m.name, path: m.path, data: await decompressModule(m.path, raw, signal) })
  }
  const guestModules: Inputs['guestModules'] = []
  for (const m of resolveModules(parseModulesDep(depText), XEN_GUEST_MODULES, parseModulesBuiltin(builtinText))) {
    const raw = await readInput(join(modDir, m.path), 'kernel module')
    guestModules.push({ name: m.name, path: m.path, data: await decompressModule(m.path, raw, signal) })
  }
  const closures: string[][] = []
  const binaries = withNode ? [...DOM0_BINARIES, await findNode()] : DOM0_BINARIES
  for (const bin of binaries) {
    if (!(await exists(bin))) throw new XenImageBuildError(`${bin} is missing (install xen-utils-${XEN_TOOLS_VERSION} and openssh-server)`)
    const text = (await run('ldd', [bin], { signal }).catch(() => Buffer.from(''))).toString()
    try {
      closures.push([bin, ...parseLdd(text)])
    } catch (err) {
      if (err instanceof MissingLibraryError) throw new XenImageBuildError(`${bin}: ${err.message}`, err)
      throw err
    }
  }
  for (const lib of DOM0_DLOPENED) {
    if (!(await exists(lib))) throw new XenImageBuildError(`${lib} is missing`)
    closures.push([lib])
  }
  const files: Inputs['files'] = []
  for (const path of unionSorted(closures)) {
    throwIfAborted(signal, 'Xen host image build')
    files.push({ path, data: await readInput(path, 'binary'), mode: 0o755 })
  }
  return {
    kernelVersion,
    kernelPath,
    kernel: await readInput(kernelPath, 'kernel'),
    xenVersion: xen.version,
    xenGz: await readInput(join(BOOT_DIR, xen.file), 'Xen hypervisor'),
    modules,
    busybox: await readInput(BUSYBOX, 'busybox (install busybox-static)'),
    init: await readInput(INIT_SCRIPT, 'init script'),
    vifScript: await readInput(VIF_SCRIPT, 'vif hotplug script'),
    guestModules,
    files
  }
}

function inputDigests (inp: Inputs): Record<string, string> {
  const d: Record<string, string> = {
    recipe: String(RECIPE_VERSION),
    [`kernel:${inp.kernelVersion}`]: sha256(inp.kernel),
    [`xen:${inp.xenVersion}`]: sha256(inp.xenGz),
    busybox: sha256(inp.busybox),
    init: sha256(inp.init),
    vif_bridge: sha256(inp.vifScript),
    sshd_config: sha256(SSHD_CONFIG),
    xl_conf: sha256(XL_CONF)
  }
  for (const m of inp.modules) d[`module:${m.path}`] = sha256(m.data)
  for (const m of inp.guestModules) d[`guest-module:${m.path}`] = sha256(m.data)
  for (const f of inp.files) d[`file:${f.path}`] = sha256(f.data)
  return d
}

function imageId (digests: Record<string, string>): string {
  const lines = Object.keys(digests).sort().map(k => `${k}=${digests[k]}`)
  return sha256(lines.join('\n')).slice(0, 12)
}

function resultFor (dir: string, id: string, m: { kernelVersion: string, xenVersion: string }): XenHostImage {
  return { xen: join(dir, 'xen'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), id, dir, kernelVersion: m.kernelVersion, xenVersion: m.xenVersion }
}

async function completeImage (dir: string, id: string): Promise<XenHostImage | undefined> {
  let manifest: Manifest
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest
  } catch {
    return undefined
  }
  if (manifest.id !== id) return undefined
  const img = resultFor(dir, id, manifest)
  for (const f of [img.xen, img.kernel, img.initrd]) {
    if (!(await exists(f))) return undefined
  }
  return img
}

/** The initramfs entries (pure given the inputs and busybox's applet list). */
export function dom0Entries (inp: Pick<Inputs, 'modules' | 'busybox' | 'init' | 'vifScript' | 'files' | 'kernelVersion' | 'xenVersion'> & { guestModules?: Inputs['guestModules'] }, applets: string[]): CpioEntry[] {
  const entries: CpioEntry[] = []
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc/ssh', 'mnt', 'var/lib', 'var/log', 'lib/modules']) {
    entries.push({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : 0o755 })
  }
  entries.push({ type: 'dir', path: 'root', mode: 0o700 })
  entries.push({ type: 'symlink', path: 'var/run', target: '/run' })
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 })
  entries.push({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 })
  entries.push({ type: 'file', path: 'init', data: inp.init, mode: 0o755 })
  entries.push({ type: 'file', path: 'bin/busybox', data: inp.busybox, mode: 0o755 })
  const taken = new Set(['bin/busybox', 'init', 'linuxrc'])
  for (const f of inp.files) {
    const p = f.path.replace(/^\/+/, '')
    entries.push({ type: 'file', path: p, data: f.data, mode: f.mode })
    taken.add(p)
  }
  for (const [p, target] of Object.entries(DOM0_SYMLINKS)) {
    entries.push({ type: 'symlink', path: p, target })
    taken.add(p)
  }
  for (const a of applets) {
    const p = a.replace(/^\/+/, '')
    if (p === '' || taken.has(p)) continue
    taken.add(p)
    entries.push({ type: 'symlink', path: p, target: '/bin/busybox' })
  }
  for (const m of inp.modules) entries.push({ type: 'file', path: `lib/modules/${m.name}.ko`, data: m.data })
  entries.push({ type: 'file', path: 'etc/sc-modules', data: Buffer.from(inp.modules.map(m => m.name).join('\n') + '\n') })
  const gm = inp.guestModules ?? []
  for (const m of gm) entries.push({ type: 'file', path: `${XEN_GUEST_MODULE_DIR.slice(1)}/${m.name}.ko`, data: m.data })
  if (gm.length > 0) entries.push({ type: 'file', path: `${XEN_GUEST_MODULE_DIR.slice(1)}/modules`, data: Buffer.from(gm.map(m => m.name).join('\n') + '\n') })
  entries.push({ type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n') })
  entries.push({ type: 'file', path: 'etc/shadow', data: Buffer.from('root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n'), mode: 0o600 })
  entries.push({ type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\nnogroup:x:65534:\n') })
  entries.push({ type: 'file', path: 'etc/ssh/sshd_config', data: Buffer.from(SSHD_CONFIG) })
  entries.push({ type: 'file', path: 'etc/xen/xl.conf', data: Buffer.from(XL_CONF) })
  entries.push({ type: 'file', path: 'etc/xen/scripts/vif-bridge', data: inp.vifScript, mode: 0o755 })
  entries.push({ type: 'file', path: 'etc/sc-image', data: Buffer.from(`kernel ${inp.kernelVersion}\nxen ${inp.xenVersion}\nrecipe ${RECIPE_VERSION}\n`) })
  return entries
}

/**
 * Returns the Xen host image, building it into the cache when missing.
 * Concurrent callers are safe: each builds into its own temp dir and the first rename wins.
 */
export async function buildXenHostImage (opts: BuildXenHostImageOptions = {}): Promise<XenHostImage> {
  const { signal } = opts
  const progress = (phase: string, message: string, fraction?: number): void => {
    const ev: ProgressEvent = { subject: 'image xen-host', phase, message }
    if (fraction !== undefined) ev.fraction = fraction
    opts.onProgress?.(ev)
  }
  throwIfAborted(signal, 'Xen host image build')
  progress('inputs', 'hashing Xen, kernel, modules, binaries and libraries', 0)
  const inp = await gatherInputs(signal, opts.withNode === true)
  const digests = inputDigests(inp)
  const id = imageId(digests)
  const imagesDir = join(opts.cacheDir ?? defaultCacheDir(), 'images')
  const dir = join(imagesDir, `xen-host-${id}`)

  if (opts.force !== true) {
    const cached = await completeImage(dir, id)
    if (cached !== undefined) {
      progress('cached', `using cached image ${dir}`, 1)
      return cached
    }
  }

  await mkdir(imagesDir, { recursive: true })
  const tmp = join(imagesDir, `.tmp-xen-host-${id}-${process.pid}-${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(tmp, { recursive: true })
    progress('initramfs', `packing busybox, ${inp.modules.length} modules, ${inp.files.length} binaries and libraries`, 0.3)
    const applets = (await run(BUSYBOX, ['--list-full'], { signal })).toString().split('\n').map(s => s.trim()).filter(s => s !== '')
    const cpio = writeNewc(dom0Entries(inp, applets))
    throwIfAborted(signal, 'Xen host image build')
    await writeFile(join(tmp, 'initrd.img'), gzipSync(cpio, { level: 6 }))
    await writeFile(join(tmp, 'xen'), gunzipSync(inp.xenGz))
    await copyFile(inp.kernelPath, join(tmp, 'vmlinuz'))
    await chmod(join(tmp, 'vmlinuz'), 0o644)
    const manifest: Manifest = { id, recipeVersion: RECIPE_VERSION, kernelVersion: inp.kernelVersion, xenVersion: inp.xenVersion, modules: inp.modules.map(m => m.name), inputs: digests }
    await writeFile(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
    throwIfAborted(signal, 'Xen host image build')
    progress('install', `installing ${dir}`, 0.9)
    await kit.install(tmp, dir, opts.force === true, async () => (await completeImage(dir, id)) !== undefined)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  const img = await completeImage(dir, id)
  if (img === undefined) throw new XenImageBuildError(`image directory ${dir} is incomplete after install`)
  progress('done', `built ${dir}`, 1)
  return img
}


