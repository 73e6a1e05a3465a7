/**
 * The tiny guest image (images/guest) as a Xen PV guest. Its initramfs loads only virtio
 * drivers; a PV domain needs Xen's front-ends. Rather than a second guest image, a small
 * cpio archive is appended to the tiny initramfs (the kernel unpacks both, the
 * later one wins): the front-end modules, an /etc/sc-modules that loads them after the
 * image's own, and the image's /init with its shell on hvc0 instead of ttyS0. Drop this once images/guest ships xen_netfront / xen_blkfront itself.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import type { TinyImage } from '../guest/build.ts'
import { writeNewc } from '../guest/cpio.ts'
import { parseModulesBuiltin, parseModulesDep, resolveModules } from '../guest/modules.ts'
import { XenImageBuildError } from './errors.ts'

/** Where the Xen host image keeps the front-end modules for guests (the host agent builds Xen guest initramfs with them). */
export const XEN_GUEST_MODULE_DIR = '/usr/lib/supercloud/xen-guest'

/** Front-ends a PV guest needs: network (vif) and block (disk). */
export const XEN_GUEST_MODULES = ['xen_netfront', 'xen_blkfront']

/** The data of the regular file `path` in an uncompressed newc archive (the last one of that name), or undefined (pure). */
export function readNewcFile (cpio: Buffer, path: string): Buffer | undefined {
  let off = 0
  let found: Buffer | undefined
  const pad = (n: number): number => (n + 3) & ~3
  while (off + 110 <= cpio.length) {
    const magic = cpio.toString('latin1', off, off + 6)
    if (magic !== '070701' && magic !== '070702') {
      // Archives can be followed by zero padding, then another archive.
      if (cpio[off] === 0) { off += 4; continue }
      throw new XenImageBuildError(`not a newc archive at offset ${off}`)
    }
    const field = (i: number): number => Number.parseInt(cpio.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16)
    const mode = field(1)
    const size = field(6)
    const nameSize = field(11)
    const name = cpio.toString('utf8', off + 110, off + 110 + nameSize - 1)
    const dataStart = pad(off + 110 + nameSize)
    if (name.replace(/^\.?\//, '') === path && (mode & 0o170000) === 0o100000) found = cpio.subarray(dataStart, dataStart + size)
    off = pad(dataStart + size)
  }
  return found
}

/**
 * The tiny image's /init for a Xen guest: its shell runs on hvc0 (Xen's console) instead of
 * ttyS0 (a PVH domain has no UART). Throws when the init has no ttyS0 shell line.
 */
export function xenGuestInit (init: string): string {
  if (!/^ttyS0::respawn:/m.test(init)) throw new XenImageBuildError('the guest /init has no "ttyS0::respawn:" inittab line to move to hvc0')
  return init.replace(/^ttyS0::respawn:/m, 'hvc0::respawn:')
}

/**
 * The appended newc archive (uncompressed): `extra` modules as lib/modules/<name>.ko, the module
 * list = base then extra, and when given a replacement /init (pure).
 */
export function xenGuestOverlayCpio (baseModules: string[], extra: Array<{ name: string, data: Uint8Array }>, init?: string): Buffer {
  const names = [...baseModules, ...extra.map(m => m.name).filter(n => !baseModules.includes(n))]
  return writeNewc([
    ...(init !== undefined ? [{ type: 'file' as const, path: 'init', data: Buffer.from(init), mode: 0o755 }] : []),
    { type: 'dir', path: 'etc', mode: 0o755 },
    { type: 'dir', path: 'lib', mode: 0o755 },
    { type: 'dir', path: 'lib/modules', mode: 0o755 },
    ...extra.map(m => ({ type: 'file' as const, path: `lib/modules/${m.name}.ko`, data: m.data })),
    { type: 'file', path: 'etc/sc-modules', data: Buffer.from(names.join('\n') + '\n') }
  ])
}

/**
 * The tiny image's initramfs with the Xen front-ends appended, ready for xl's `ramdisk`.
 * One gzip stream over both archives: libxenguest inflates a gzip'ed ramdisk itself and
 * fails on a second gzip member.
 */
export async function xenGuestInitrd (tiny: TinyImage): Promise<Buffer> {
  const read = async (p: string): Promise<Buffer> => await readFile(p).catch(err => { throw new XenImageBuildError(`cannot read ${p}`, err) })
  const manifest = JSON.parse((await read(join(tiny.dir, 'manifest.json'))).toString()) as { modules?: string[] }
  const modDir = join('/lib/modules', tiny.kernelVersion)
  const dep = parseModulesDep((await read(join(modDir, 'modules.dep'))).toString())
  const builtin = parseModulesBuiltin(await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => ''))
  const extra: Array<{ name: string, data: Buffer }> = []
  for (const m of resolveModules(dep, XEN_GUEST_MODULES, builtin)) {
    if (!m.path.endsWith('.ko')) throw new XenImageBuildError(`compressed module ${m.path} is not supported here`)
    extra.push({ name: m.name, data: await read(join(modDir, m.path)) })
  }
  return xenGuestInitrdFrom(await read(tiny.initrd), extra, manifest.modules)
}

/**
 * The same from a gzip'ed tiny initramfs and the front-end modules' bytes (pure; the host
 * agent in a dom0 uses it with the modules shipped in the Xen host image). The base module
 * list comes from `baseModules` or the archive's /etc/sc-modules.
 */
export function xenGuestInitrdFrom (initrdGz: Buffer, extra: Array<{ name: string, data: Uint8Array }>, baseModules?: string[]): Buffer {
  const base = gunzipSync(initrdGz)
  const init = readNewcFile(base, 'init')
  if (init === undefined) throw new XenImageBuildError('the guest initramfs has no /init')
  const mods = baseModules ?? (readNewcFile(base, 'etc/sc-modules')?.toString('utf8') ?? '').split('\n').filter(l => l.trim() !== '')
  return gzipSync(Buffer.concat([base, xenGuestOverlayCpio(mods, extra, xenGuestInit(init.toString('utf8')))]), { level: 6 })
}
