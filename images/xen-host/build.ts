/**
 * Builds (or finds in the cache) the Xen host image: Debian's Xen hypervisor
 * (unpacked to the multiboot ELF QEMU's -kernel loads), the host's generic Debian
 * kernel as PV dom0, and an initramfs-only root with busybox, the Xen control modules,
 * the xl toolstack with xenstored / xenconsoled, and OpenSSH's sshd. Dynamically linked
 * binaries are copied with their `ldd` closure at their original paths.
 *
 * Content-addressed like images/guest/build.ts (both through images/lib/image-cache.ts): the
 * id hashes every input, so the same inputs give the same directory
 * (<cache>/images/xen-host-<id>/) and the same bytes.
 * Per-launch secrets (ssh host key, authorized_keys) are NOT in the image: the launcher
 * appends them as a second cpio archive (drivers/local/xen-host-args.ts).
 */
import { chmod, copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { throwIfAborted } from '../../core/errors.ts'
import { projectPath } from '../../core/root.ts'
import { type CpioEntry, writeNewc } from '../guest/cpio.ts'
import { BOOT_DIR, buildKit, type KernelModule, progressReporter, sha256 } from '../lib/build-kit.ts'
import { cachedImage, type ImageBuildOptions, type ImageManifest, imageId } from '../lib/image-cache.ts'
import { INIT_COMMON_DIGEST_KEY, initCommonEntry, readInitCommon } from '../lib/init-common.ts'
import { initramfsEntries } from '../lib/initramfs.ts'
import { MissingLibraryError, parseLdd, unionSorted } from './closure.ts'
import { XenImageBuildError } from './errors.ts'
import { XEN_GUEST_MODULE_DIR, XEN_GUEST_MODULES } from './guest-overlay.ts'

const kit = buildKit('Xen host image build', (detail, cause) => new XenImageBuildError(detail, cause))

/** Bump when the way the image is assembled changes (invalidates every cached image). */
export const RECIPE_VERSION = 4

/** The guest CPUID policy this image's dom0 hands the Xen backend (see dom0Entries). */
export const XEN_GUEST_CPUID = 'host,xsave=0'

/** Debian's Xen version whose tools go into the image (xen-utils-<version>). */
export const XEN_TOOLS_VERSION = '4.17'

/** Modules loaded at boot, dependencies first (resolved from modules.dep). */
export const DOM0_MODULES = [
  'xen_privcmd', 'xenfs', 'xen_evtchn', 'xen_gntdev', 'xen_gntalloc', 'xen_netback', 'xen_blkback',
  'bridge', 'tun', 'virtio_pci', 'virtio_net',
  // VirtualWire on a Xen host: connectors (kernel VXLAN) and the endpoint interface (FUSE).
  'vxlan', 'fuse',
  // Guest disks: raw images through loop devices, the Overdriver swap export through NBD (nbd-client).
  'loop', 'nbd',
  // The host firewall (blanket-manager/firewall: an inet and a bridge table, conntrack state,
  // the guest mark set on frames from vifs in the bridge family). crc32c_generic first: libcrc32c
  // (which nf_tables needs) asks the crypto API for crc32c, a soft dependency modules.dep omits.
  'crc32c_generic', 'nf_tables', 'nft_ct', 'nft_meta_bridge'
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
  // A guest's swap disk: the host agent's NBD export (a unix socket) as /dev/nbdN for blkback.
  '/usr/sbin/nbd-client',
  // iproute2 (the host agent makes taps with `ip tuntap`, which busybox's ip lacks; VirtualWire
  // sets VXLAN forwarding entries with `bridge fdb`).
  '/usr/bin/ip', '/usr/sbin/bridge',
  // The Blanket bootstrap starts its daemons with `setsid nohup` (busybox has no nohup).
  '/usr/bin/nohup',
  // The host firewall, installed with `nft -f` as on every other host.
  '/usr/sbin/nft'
]
/**
 * Libraries loaded with dlopen (so not in any ldd closure): glibc needs libgcc_s for
 * pthread_cancel (xl create); the VirtualWire endpoint manager's fuse-native addon links libfuse 2.
 */
export const DOM0_DLOPENED = ['/lib/x86_64-linux-gnu/libgcc_s.so.1', '/lib/x86_64-linux-gnu/libfuse.so.2']
/** The protocol names nft needs (netbase's /etc/protocols, the lines the firewall's rules name). */
export const DOM0_PROTOCOLS = 'icmp\t1\tICMP\ntcp\t6\tTCP\nudp\t17\tUDP\nipv6-icmp\t58\tIPv6-ICMP\n'
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

/** The image goes to <cacheDir>/images/xen-host-<id>/. */
export interface BuildXenHostImageOptions extends ImageBuildOptions {
  /**
   * Also ship node (`command -v node`, with its library closure) for the host agent. Makes
   * the initramfs ~30 MB bigger (a different image id); the `local` Xen host flavour needs it.
   */
  withNode?: boolean
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

interface Manifest extends ImageManifest {
  xenVersion: string
}

const HERE = projectPath('images', 'xen-host')
const INIT_SCRIPT = join(HERE, 'init.sh')
const VIF_SCRIPT = join(HERE, 'vif-bridge.sh')
const BLOCK_SCRIPT = join(HERE, 'block.sh')

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
  modules: KernelModule[]
  busybox: Buffer
  init: Buffer
  /** images/lib/init-common.sh, which init sources. */
  initCommon: Buffer
  vifScript: Buffer
  blockScript: Buffer
  /** xen_netfront / xen_blkfront (+ deps) for guests, dependencies first. */
  guestModules: KernelModule[]
  /** Binaries and their libraries, by absolute path (sorted). */
  files: Array<{ path: string, data: Buffer, mode: number }>
}

async function findNode (): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(':').filter(d => d !== '')) {
    if (await kit.exists(join(dir, 'node'))) return join(dir, 'node')
  }
  return process.execPath
}

async function gatherInputs (signal?: AbortSignal, withNode = false): Promise<Inputs> {
  const { kernelVersion, kernelPath, kernel, bootFiles } = await kit.hostKernel()
  const xen = newestXen(bootFiles)
  if (xen === undefined) throw new XenImageBuildError(`no xen-*-amd64.gz in ${BOOT_DIR} (install xen-hypervisor-${XEN_TOOLS_VERSION}-amd64)`)
  const modules = await kit.kernelModules(kernelVersion, DOM0_MODULES, signal)
  const guestModules = await kit.kernelModules(kernelVersion, XEN_GUEST_MODULES, signal)
  const closures: string[][] = []
  const binaries = withNode ? [...DOM0_BINARIES, await findNode()] : DOM0_BINARIES
  for (const bin of binaries) {
    if (!(await kit.exists(bin))) throw new XenImageBuildError(`${bin} is missing (install xen-utils-${XEN_TOOLS_VERSION}, openssh-server, nbd-client and nftables: scripts/setup.sh)`)
    const text = (await kit.run('ldd', [bin], { signal }).catch(() => Buffer.from(''))).toString()
    try {
      closures.push([bin, ...parseLdd(text)])
    } catch (err) {
      if (err instanceof MissingLibraryError) throw new XenImageBuildError(`${bin}: ${err.message}`, err)
      throw err
    }
  }
  for (const lib of DOM0_DLOPENED) {
    if (!(await kit.exists(lib))) throw new XenImageBuildError(`${lib} is missing`)
    closures.push([lib])
  }
  const files: Inputs['files'] = []
  for (const path of unionSorted(closures)) {
    throwIfAborted(signal, kit.what)
    files.push({ path, data: await kit.readInput(path, 'binary'), mode: 0o755 })
  }
  return {
    kernelVersion,
    kernelPath,
    kernel,
    xenVersion: xen.version,
    xenGz: await kit.readInput(join(BOOT_DIR, xen.file), 'Xen hypervisor'),
    modules,
    busybox: await kit.busybox(),
    init: await kit.readInput(INIT_SCRIPT, 'init script'),
    initCommon: await readInitCommon(kit),
    vifScript: await kit.readInput(VIF_SCRIPT, 'vif hotplug script'),
    blockScript: await kit.readInput(BLOCK_SCRIPT, 'block hotplug script'),
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
    [INIT_COMMON_DIGEST_KEY]: sha256(inp.initCommon),
    vif_bridge: sha256(inp.vifScript),
    block: sha256(inp.blockScript),
    guest_cpuid: sha256(XEN_GUEST_CPUID),
    sshd_config: sha256(SSHD_CONFIG),
    xl_conf: sha256(XL_CONF),
    protocols: sha256(DOM0_PROTOCOLS)
  }
  for (const m of inp.modules) d[`module:${m.path}`] = sha256(m.data)
  for (const m of inp.guestModules) d[`guest-module:${m.path}`] = sha256(m.data)
  for (const f of inp.files) d[`file:${f.path}`] = sha256(f.data)
  return d
}

function describe (dir: string, m: Manifest): { image: XenHostImage, files: string[] } {
  const image: XenHostImage = { xen: join(dir, 'xen'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd.img'), id: m.id, dir, kernelVersion: m.kernelVersion, xenVersion: m.xenVersion }
  return { image, files: [image.xen, image.kernel, image.initrd] }
}

/** The guests' modules (xen_netfront, ...) and their load order, under XEN_GUEST_MODULE_DIR; none when there are none. */
function guestModuleEntries (modules: KernelModule[]): CpioEntry[] {
  if (modules.length === 0) return []
  const dir = XEN_GUEST_MODULE_DIR.slice(1)
  return [
    ...modules.map((m): CpioEntry => ({ type: 'file', path: `${dir}/${m.name}.ko`, data: m.data })),
    { type: 'file', path: `${dir}/modules`, data: Buffer.from(modules.map(m => m.name).join('\n') + '\n') }
  ]
}

/** The initramfs entries (pure given the inputs and busybox's applet list). */
export function dom0Entries (inp: Pick<Inputs, 'modules' | 'busybox' | 'init' | 'initCommon' | 'vifScript' | 'blockScript' | 'files' | 'kernelVersion' | 'xenVersion'> & { guestModules?: Inputs['guestModules'] }, applets: string[]): CpioEntry[] {
  return initramfsEntries({
    dirs: ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'run', 'tmp', 'etc/ssh', 'mnt', 'var/lib', 'var/log', 'lib/modules', 'root'],
    init: inp.init,
    busybox: inp.busybox,
    own: [
      { type: 'symlink', path: 'var/run', target: '/run' },
      ...inp.files.map((f): CpioEntry => ({ type: 'file', path: f.path.replace(/^\/+/, ''), data: f.data, mode: f.mode })),
      ...Object.entries(DOM0_SYMLINKS).map(([path, target]): CpioEntry => ({ type: 'symlink', path, target }))
    ],
    applets,
    modules: inp.modules,
    extra: [
      initCommonEntry(inp.initCommon),
      ...guestModuleEntries(inp.guestModules ?? []),
      { type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n') },
      { type: 'file', path: 'etc/shadow', data: Buffer.from('root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\n'), mode: 0o600 },
      { type: 'file', path: 'etc/group', data: Buffer.from('root:x:0:\nnogroup:x:65534:\n') },
      { type: 'file', path: 'etc/ssh/sshd_config', data: Buffer.from(SSHD_CONFIG) },
      { type: 'file', path: 'etc/xen/xl.conf', data: Buffer.from(XL_CONF) },
      // nft resolves the protocol names of the firewall's rules (icmp, ipv6-icmp) here.
      { type: 'file', path: 'etc/protocols', data: Buffer.from(DOM0_PROTOCOLS) },
      { type: 'file', path: 'etc/xen/scripts/vif-bridge', data: inp.vifScript, mode: 0o755 },
      { type: 'file', path: 'etc/xen/scripts/block', data: inp.blockScript, mode: 0o755 },
      // Guests of this emulated Xen host do not see XSAVE (drivers/xen GUEST_CPUID_FILE):
      // QEMU 7.2's TCG faulted a guest's XRSTOR ("Bad FPU state") under SVM; FXSAVE is unaffected.
      { type: 'file', path: 'etc/supercloud/xen-guest-cpuid', data: Buffer.from(`${XEN_GUEST_CPUID}\n`) },
      { type: 'file', path: 'etc/sc-image', data: Buffer.from(`kernel ${inp.kernelVersion}\nxen ${inp.xenVersion}\nrecipe ${RECIPE_VERSION}\n`) }
    ]
  })
}

/**
 * Returns the Xen host image, building it into the cache when missing.
 * Concurrent callers are safe: each builds into its own temp dir and the first rename wins.
 */
export async function buildXenHostImage (opts: BuildXenHostImageOptions = {}): Promise<XenHostImage> {
  const { signal } = opts
  const progress = progressReporter('image xen-host', opts.onProgress)
  throwIfAborted(signal, kit.what)
  progress('inputs', 'hashing Xen, kernel, modules, binaries and libraries', 0)
  const inp = await gatherInputs(signal, opts.withNode === true)
  const digests = inputDigests(inp)
  const manifest: Manifest = { id: imageId(digests), recipeVersion: RECIPE_VERSION, kernelVersion: inp.kernelVersion, xenVersion: inp.xenVersion, modules: inp.modules.map(m => m.name), inputs: digests }
  return await cachedImage({
    kit,
    name: 'xen-host',
    opts,
    progress,
    manifest,
    describe,
    assemble: async tmp => {
      progress('initramfs', `packing busybox, ${inp.modules.length} modules, ${inp.files.length} binaries and libraries`, 0.3)
      const cpio = writeNewc(dom0Entries(inp, await kit.busyboxApplets(signal)))
      throwIfAborted(signal, kit.what)
      await writeFile(join(tmp, 'initrd.img'), gzipSync(cpio, { level: 6 }))
      await writeFile(join(tmp, 'xen'), gunzipSync(inp.xenGz))
      await copyFile(inp.kernelPath, join(tmp, 'vmlinuz'))
      await chmod(join(tmp, 'vmlinuz'), 0o644)
    }
  })
}
