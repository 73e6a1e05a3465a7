/**
 * The endpoint interface as files (seed 002, Figure 5.9), served from user space with FUSE
 * (`fuse-native`, libfuse 2) at a configurable root:
 *
 *   <root>/create      write "<N> <AdrA> <AdrB>"
 *   <root>/destroy     write "<N>"
 *   <root>/last_error  read: why the last write was refused
 *   <root>/<N>         read: the endpoint's config line; write "<AdrC>": re-point
 *
 * Writes are line-buffered per open handle: every complete line is applied during the write
 * call (so a refused line fails that write(2) with its errno, as /proc does); an unterminated
 * rest is applied at flush (close(2) returns its errno).
 */
import { execFile } from 'node:child_process'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { resolve } from 'node:path'
import Fuse from 'fuse-native'
import {
  CREATE_FILE, DESTROY_FILE, EndpointWriteError, LAST_ERROR_FILE, LineBuffer, endpointIdOfFile,
  type EndpointErrno
} from './interface.ts'
import type { EndpointManager, EndpointLog } from './manager.ts'

const ERRNO: Record<EndpointErrno, number> = {
  EINVAL: Fuse.EINVAL,
  EEXIST: Fuse.EEXIST,
  ENOENT: Fuse.ENOENT,
  ERANGE: Fuse.ERANGE,
  EACCES: Fuse.EACCES,
  EIO: Fuse.EIO
}

// fuse-native unmounts with `fusermount -uz`, which hosts may lack (libfuse2 without the
// `fuse` package). The endpoint manager runs as root, so a lazy umount(8) does the same.
Fuse.unmount = (mnt: string, cb: (err: Error | null) => void): void => {
  execFile('umount', ['-l', mnt], (err, _stdout, stderr) => {
    cb(err !== null && !/not mounted|no mount point/i.test(String(stderr)) ? new Error(`umount -l ${mnt}: ${String(stderr).trim() || err.message}`) : null)
  })
}

interface Handle {
  file: string
  buf: LineBuffer
  /** Snapshot for reads, taken at open. */
  content: Buffer
}

export interface EndpointFs {
  root: string
  unmount (): Promise<void>
}

/** Mount points at exactly `root` in this mount namespace (from /proc/self/mountinfo). */
export async function mountsAt (root: string): Promise<number> {
  const info = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
  return info.split('\n').filter(l => unescape(l.split(' ')[4] ?? '') === root).length
}

/**
 * Removes mounts left at `root` (a FUSE mount outlives its dead process as "Transport endpoint
 * is not connected"). Only call this when no live endpoint manager serves `root`.
 */
export async function cleanStaleMount (root: string): Promise<number> {
  const abs = resolve(root)
  let removed = 0
  for (let i = 0; i < 8 && await mountsAt(abs) > 0; i++) {
    await new Promise<void>((resolve, reject) => {
      Fuse.unmount(abs, err => { if (err !== null) reject(err); else resolve() })
    })
    removed++
  }
  return removed
}

function fileOf (path: string): string | undefined {
  if (path === '/') return undefined
  const name = path.slice(1)
  return name.includes('/') ? '' : name
}

/** Serves `manager` at `root` (created when missing; a stale mount there is removed first). */
export async function mountEndpointFs (manager: EndpointManager, root: string, log: EndpointLog = () => {}): Promise<EndpointFs> {
  const abs = resolve(root)
  await cleanStaleMount(abs)
  await mkdir(abs, { recursive: true })
  await stat(abs)

  const handles = new Map<number, Handle>()
  let nextFd = 1
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0

  const exists = (file: string): boolean => manager.read(file) !== undefined
  const statOf = (file: string): { mode: number, size: number } => {
    const size = Buffer.byteLength(manager.read(file) ?? '')
    if (file === CREATE_FILE || file === DESTROY_FILE) return { mode: 0o100200, size }
    if (file === LAST_ERROR_FILE) return { mode: 0o100444, size }
    return { mode: 0o100644, size }
  }
  const errnoOf = (err: unknown): number => err instanceof EndpointWriteError ? ERRNO[err.errno] : Fuse.EIO

  /** Applies lines in order; stops at the first refusal. */
  const applyLines = async (file: string, lines: string[]): Promise<void> => {
    for (const line of lines) await manager.write(file, line)
  }

  const ops: import('fuse-native').FuseOps = {
    init: cb => { cb(0) },
    getattr: (path, cb) => {
      const t = new Date(manager.changedAt)
      if (path === '/') { cb(0, { mode: 0o40755, size: 4096, nlink: 2, uid, gid, mtime: t, atime: t, ctime: t }); return }
      const file = fileOf(path)
      if (file === undefined || !exists(file)) { cb(Fuse.ENOENT); return }
      cb(0, { ...statOf(file), nlink: 1, uid, gid, mtime: t, atime: t, ctime: t })
    },
    readdir: (path, cb) => {
      if (path !== '/') { cb(Fuse.ENOTDIR); return }
      cb(0, manager.files())
    },
    open: (path, flags, cb) => {
      const file = fileOf(path)
      if (file === undefined) { cb(Fuse.EISDIR); return }
      const content = manager.read(file)
      if (content === undefined) { cb(Fuse.ENOENT); return }
      const writing = (flags & 3) !== 0
      if (writing && file === LAST_ERROR_FILE) {
        manager.refuse(file, '', new EndpointWriteError('EACCES', `${LAST_ERROR_FILE} is read-only`))
        cb(Fuse.EACCES); return
      }
      const fd = nextFd++
      handles.set(fd, { file, buf: new LineBuffer(), content: Buffer.from(content) })
      cb(0, fd)
    },
    create: (path, _mode, cb) => {
      // The shell's `>` opens with O_CREAT: for a file that does not exist we land here.
      const file = fileOf(path) ?? ''
      const id = endpointIdOfFile(file)
      const err = id !== undefined
        ? new EndpointWriteError('ENOENT', `endpoint ${id} does not exist (create it by writing "<N> <AdrA> <AdrB>" to ${CREATE_FILE})`)
        : new EndpointWriteError('ENOENT', `no file '${file}' in the endpoint interface (create, destroy, last_error, <N>)`)
      manager.refuse(file, '', err)
      cb(ERRNO[err.errno])
    },
    read: (_path, fd, buf, len, pos, cb) => {
      const h = handles.get(fd)
      if (h === undefined) { cb(Fuse.EIO); return }
      if (pos >= h.content.length) { cb(0); return }
      const part = h.content.subarray(pos, pos + len)
      part.copy(buf)
      cb(part.length)
    },
    write: (_path, fd, buf, len, _pos, cb) => {
      const h = handles.get(fd)
      if (h === undefined) { cb(Fuse.EIO); return }
      const lines = h.buf.push(buf.subarray(0, len).toString('utf8'))
      applyLines(h.file, lines).then(() => { cb(len) }, err => { h.buf.takeRest(); cb(errnoOf(err)) })
    },
    flush: (_path, fd, cb) => {
      const h = handles.get(fd)
      const rest = h?.buf.takeRest() ?? ''
      if (h === undefined || rest.trim() === '') { cb(0); return }
      applyLines(h.file, [rest]).then(() => { cb(0) }, err => { cb(errnoOf(err)) })
    },
    release: (_path, fd, cb) => {
      const h = handles.get(fd)
      handles.delete(fd)
      const rest = h?.buf.takeRest() ?? ''
      if (h === undefined || rest.trim() === '') { cb(0); return }
      applyLines(h.file, [rest]).then(() => { cb(0) }, err => {
        log('warn', `write to ${h.file} refused at close: ${(err as Error).message}`)
        cb(0)
      })
    },
    // `>` truncates; the interface's files have no stored content, so truncation is a no-op.
    truncate: (path, _size, cb) => { cb(exists(fileOf(path) ?? '') ? 0 : Fuse.ENOENT) },
    ftruncate: (_path, _fd, _size, cb) => { cb(0) },
    utimens: (_path, _a, _m, cb) => { cb(0) },
    unlink: (_path, cb) => { cb(Fuse.EPERM) },
    chmod: (_path, _mode, cb) => { cb(Fuse.EPERM) },
    chown: (_path, _u, _g, cb) => { cb(Fuse.EPERM) }
  }

  // Attributes and names are never cached by the kernel: sizes and the listing change with
  // every write. (fuse-native drops falsy option values, hence the strings.)
  // No time limit on an operation: a write returns when the kernel change is made or refused, as
  // a write to /sys does. (fuse-native's default answers ETIMEDOUT after 15 s while the change
  // goes on; an emulated Xen dom0 under load took 21 s for a create, and the writer's shell saw
  // a silent failure of a change that was made.)
  const fuse = new Fuse(abs, ops, { fsname: `vw-endpoints-${manager.prefix}`, attrTimeout: '0', entryTimeout: '0', timeout: false })
  await new Promise<void>((resolve, reject) => {
    fuse.mount(err => { if (err !== null && err !== undefined) reject(err); else resolve() })
  })
  log('info', `endpoint interface mounted at ${abs}`)

  let unmounted: Promise<void> | undefined
  return {
    root: abs,
    unmount: async () => {
      unmounted ??= new Promise<void>((resolve, reject) => {
        fuse.unmount(err => { if (err !== null && err !== undefined) reject(err); else resolve() })
      }).then(() => { log('info', `endpoint interface unmounted from ${abs}`) })
      await unmounted
    }
  }
}
