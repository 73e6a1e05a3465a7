/**
 * The root every image's initramfs shares: the directory skeleton, /dev/console and /dev/null,
 * the recipe's /init, busybox with a symlink per applet, and the boot-time kernel modules
 * (lib/modules/<name>.ko, their load order in etc/sc-modules, read by init.sh). Pure.
 */
import type { CpioEntry } from '../guest/cpio.ts'

export interface InitramfsRoot {
  /** Directories; tmp gets mode 1777, root 0700, the others 0755. */
  dirs: string[]
  /** The init script (/init). */
  init: Buffer
  /** The static busybox (/bin/busybox). */
  busybox: Buffer
  /** The recipe's own binaries and symlinks: a busybox applet never replaces one. */
  own: CpioEntry[]
  /** busybox's applet paths (`busybox --list-full`). */
  applets: string[]
  /** Loaded by init in this order. */
  modules: Array<{ name: string, data: Buffer }>
  /** The rest (configuration under etc/, ...). */
  extra: CpioEntry[]
}

export function initramfsEntries (root: InitramfsRoot): CpioEntry[] {
  const entries: CpioEntry[] = []
  for (const d of root.dirs) {
    entries.push({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : d === 'root' ? 0o700 : 0o755 })
  }
  entries.push({ type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 })
  entries.push({ type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 })
  entries.push({ type: 'file', path: 'init', data: root.init, mode: 0o755 })
  entries.push({ type: 'file', path: 'bin/busybox', data: root.busybox, mode: 0o755 })
  const taken = new Set(['bin/busybox', 'init', 'linuxrc'])
  for (const e of root.own) {
    entries.push(e)
    taken.add(e.path)
  }
  for (const a of root.applets) {
    const p = a.replace(/^\/+/, '')
    if (p === '' || taken.has(p)) continue
    taken.add(p)
    entries.push({ type: 'symlink', path: p, target: '/bin/busybox' })
  }
  for (const m of root.modules) entries.push({ type: 'file', path: `lib/modules/${m.name}.ko`, data: m.data })
  entries.push({ type: 'file', path: 'etc/sc-modules', data: Buffer.from(root.modules.map(m => m.name).join('\n') + '\n') })
  entries.push(...root.extra)
  return entries
}
