/**
 * A deterministic writer for the cpio "newc" format (what the Linux kernel
 * unpacks as an initramfs). Pure: entries in, bytes out. Every entry gets
 * uid/gid 0, mtime 0 and a sequential inode; entries are sorted by path and
 * missing parent directories are added, so the same entries always give the
 * same bytes.
 */

export type CpioEntry =
  | { type: 'file', path: string, data: Uint8Array, mode?: number }
  | { type: 'dir', path: string, mode?: number }
  | { type: 'symlink', path: string, target: string }
  | { type: 'chardev', path: string, major: number, minor: number, mode?: number }

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const S_IFCHR = 0o020000

/** Normalizes "./a//b/" to "a/b"; rejects empty, absolute-escaping or ".." paths. */
export function normalizeCpioPath (p: string): string {
  const parts = p.split('/').filter(s => s !== '' && s !== '.')
  if (parts.length === 0 || parts.includes('..')) throw new Error(`bad cpio path '${p}'`)
  return parts.join('/')
}

function hex8 (n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio field out of range: ${n}`)
  return n.toString(16).padStart(8, '0')
}

function pad4 (n: number): number {
  return (4 - (n % 4)) % 4
}

function header (f: { ino: number, mode: number, nlink: number, size: number, rmajor: number, rminor: number, nameSize: number }): string {
  return '070701' + [
    f.ino, f.mode, 0, 0, f.nlink, 0, f.size, 0, 0, f.rmajor, f.rminor, f.nameSize, 0
  ].map(hex8).join('')
}

/** Byte-wise comparison so the order does not depend on locale. */
function comparePaths (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

export function writeNewc (entries: CpioEntry[]): Buffer {
  const byPath = new Map<string, CpioEntry>()
  for (const e of entries) {
    const path = normalizeCpioPath(e.path)
    if (byPath.has(path)) throw new Error(`duplicate cpio path '${path}'`)
    byPath.set(path, { ...e, path })
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/')
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/')
      const existing = byPath.get(parent)
      if (existing === undefined) byPath.set(parent, { type: 'dir', path: parent })
      else if (existing.type !== 'dir') throw new Error(`cpio path '${parent}' is a ${existing.type} but has children`)
    }
  }
  const sorted = [...byPath.values()].sort((a, b) => comparePaths(a.path, b.path))
  const chunks: Buffer[] = []
  const push = (name: string, mode: number, nlink: number, data: Uint8Array, rmajor = 0, rminor = 0, ino = 0): void => {
    const nameBytes = Buffer.from(name + '\0', 'utf8')
    const h = Buffer.from(header({ ino, mode, nlink, size: data.length, rmajor, rminor, nameSize: nameBytes.length }), 'ascii')
    chunks.push(h, nameBytes, Buffer.alloc(pad4(h.length + nameBytes.length)), Buffer.from(data), Buffer.alloc(pad4(data.length)))
  }
  let ino = 1
  for (const e of sorted) {
    switch (e.type) {
      case 'dir': push(e.path, S_IFDIR | (e.mode ?? 0o755), 2, new Uint8Array(0), 0, 0, ino++); break
      case 'file': push(e.path, S_IFREG | (e.mode ?? 0o644), 1, e.data, 0, 0, ino++); break
      case 'symlink': push(e.path, S_IFLNK | 0o777, 1, Buffer.from(e.target, 'utf8'), 0, 0, ino++); break
      case 'chardev': push(e.path, S_IFCHR | (e.mode ?? 0o600), 1, new Uint8Array(0), e.major, e.minor, ino++); break
    }
  }
  push('TRAILER!!!', 0, 1, new Uint8Array(0))
  return Buffer.concat(chunks)
}
