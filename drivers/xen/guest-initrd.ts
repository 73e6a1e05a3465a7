/**
 * For the host agent inside a dom0: turns the tiny guest image's initramfs (virtio drivers,
 * shell on ttyS0) into one a PVH domain boots (Xen front-ends, shell on hvc0), with the
 * front-end modules the Xen host image ships in XEN_GUEST_MODULE_DIR. Cached by content.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { XEN_GUEST_MODULE_DIR, xenGuestInitrdFrom } from '../../images/xen-host/guest-overlay.ts'

/** Returns a function mapping an initrd path to its Xen variant under `cacheDir`. */
export function xenInitrdConverter (cacheDir: string, moduleDir = XEN_GUEST_MODULE_DIR): (initrd: string) => Promise<string> {
  // Guests started at once share one conversion of the same image.
  const pending = new Map<string, Promise<string>>()
  return async (initrd: string): Promise<string> => {
    let p = pending.get(initrd)
    if (p === undefined) {
      p = convert(initrd)
      pending.set(initrd, p)
      p.finally(() => pending.delete(initrd)).catch(() => {})
    }
    return await p
  }
  async function convert (initrd: string): Promise<string> {
    const data = await readFile(initrd)
    const out = join(cacheDir, `${createHash('sha256').update(data).digest('hex').slice(0, 16)}.xen.img`)
    try { if ((await stat(out)).size > 0) return out } catch { /* not yet */ }
    const names = (await readFile(join(moduleDir, 'modules'), 'utf8')).split('\n').map(s => s.trim()).filter(s => s !== '')
    const extra = await Promise.all(names.map(async name => ({ name, data: await readFile(join(moduleDir, `${name}.ko`)) })))
    await mkdir(cacheDir, { recursive: true })
    const tmp = `${out}.${process.pid}.${randomBytes(4).toString('hex')}`
    await writeFile(tmp, xenGuestInitrdFrom(data, extra))
    await rename(tmp, out)
    return out
  }
}
