/** Minimal typings of the parts of `fuse-native` (v2) the endpoint interface uses. */
declare module 'fuse-native' {
  class Fuse {
    constructor (mnt: string, ops: Fuse.FuseOps, opts?: Fuse.FuseOpts)
    readonly mnt: string
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    static unmount (mnt: string, cb: (err: Error | null) => void): void
    static EPERM: number
    static ENOENT: number
    static EIO: number
    static EACCES: number
    static EEXIST: number
    static EINVAL: number
    static ERANGE: number
    static EISDIR: number
    static ENOTDIR: number
  }
  namespace Fuse {
    export interface FuseStat {
      mode: number
      uid?: number
      gid?: number
      size?: number
      nlink?: number
      mtime?: Date
      atime?: Date
      ctime?: Date
    }
    export type Cb = (err: number) => void
    export interface FuseOps {
      init?: (cb: Cb) => void
      getattr?: (path: string, cb: (err: number, stat?: FuseStat) => void) => void
      fgetattr?: (path: string, fd: number, cb: (err: number, stat?: FuseStat) => void) => void
      readdir?: (path: string, cb: (err: number, names?: string[]) => void) => void
      open?: (path: string, flags: number, cb: (err: number, fd?: number) => void) => void
      create?: (path: string, mode: number, cb: (err: number, fd?: number) => void) => void
      read?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void) => void
      write?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void) => void
      flush?: (path: string, fd: number, cb: Cb) => void
      release?: (path: string, fd: number, cb: Cb) => void
      truncate?: (path: string, size: number, cb: Cb) => void
      ftruncate?: (path: string, fd: number, size: number, cb: Cb) => void
      utimens?: (path: string, atime: Date, mtime: Date, cb: Cb) => void
      unlink?: (path: string, cb: Cb) => void
      chmod?: (path: string, mode: number, cb: Cb) => void
      chown?: (path: string, uid: number, gid: number, cb: Cb) => void
    }
    export interface FuseOpts {
      force?: boolean
      mkdir?: boolean
      fsname?: string
      attrTimeout?: number | string
      entryTimeout?: number | string
      debug?: boolean
      timeout?: number | false
    }
  }
  export = Fuse
}
