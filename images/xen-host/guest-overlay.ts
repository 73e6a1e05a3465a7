/**
 * The tiny guest image (images/guest) as a Xen PV guest. Its initramfs loads only virtio
 * drivers; a PV domain needs Xen's front-ends. Rather than a second guest image, a small
 * cpio archive is appended to the tiny initramfs (the kernel unpacks both, the
 * later one wins): the front-end modules and an /etc/sc-modules that loads them after the
 * image's own. Drop this once images/guest ships xen_netfront / xen_blkfront itself.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import type { TinyImage } from '../guest/build.ts'
import { writeNewc } from '../guest/cpio.ts'
import { parseModulesBuiltin, parseModulesDep, resolveModules } from '../guest/modules.ts'
import { XenImageBuildError } from './errors.ts'

/** Front-ends a PV guest needs: network (vif) and block (disk). */
export const XEN_GUEST_MODULES = ['xen_netfront', 'xen_blkfront']

/** The appended newc archive (uncompressed): `extra` modules as lib/modules/<name>.ko, the module list = base then extra (pure). */
export function xenGuestOverlayCpio (baseModules: string[], extra: Array<{ name: string, data: Uint8Array }>): Buffer {
  const names = [...baseModules, ...extra.map(m => m.name).filter(n => !baseModules.includes(n))]
  return writeNewc([
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
  return gzipSync(Buffer.concat([gunzipSync(await read(tiny.initrd)), xenGuestOverlayCpio(manifest.modules ?? [], extra)]), { level: 6 })
}
