/**
 * What every image recipe (images/guest, images/xen-host) needs around its own packing:
 * hashing, reading inputs, running a tool, decompressing kernel modules, and installing the
 * finished directory into the content-addressed cache atomically. Errors are the recipe's own
 * typed error (`fail`), so a user sees which image failed.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { constants as fsc } from 'node:fs'
import { access, readFile, rename, rm } from 'node:fs/promises'
import { gunzipSync } from 'node:zlib'
import { CancelledError } from '../../blanket-manager/errors.ts'

export interface BuildKit {
  sha256: (data: Uint8Array | string) => string
  exists: (path: string) => Promise<boolean>
  /** Reads an input file; a missing one is the recipe's error naming `what`. */
  readInput: (path: string, what: string) => Promise<Buffer>
  /** Runs a command to completion; resolves stdout, rejects with the recipe's error carrying stderr. */
  run: (cmd: string, args: string[], opts?: { cwd?: string, signal?: AbortSignal, input?: Buffer }) => Promise<Buffer>
  /** A kernel module's bytes, uncompressed (.ko, .ko.gz, .ko.xz, .ko.zst). */
  decompressModule: (path: string, data: Buffer, signal?: AbortSignal) => Promise<Buffer>
  /**
   * Moves the finished temp dir `tmp` to `dir` atomically. A lost race keeps the winner's copy
   * when `isComplete()`; a forced rebuild or an incomplete leftover is moved aside first.
   */
  install: (tmp: string, dir: string, force: boolean, isComplete: () => Promise<boolean>) => Promise<void>
}

/** `what`: the build, for cancel messages ("guest image build"); `fail`: the recipe's typed error. */
export function buildKit (what: string, fail: (detail: string, cause?: unknown) => Error): BuildKit {
  const sha256 = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex')
  const exists = async (p: string): Promise<boolean> => {
    try { await access(p, fsc.F_OK); return true } catch { return false }
  }
  const readInput = async (path: string, w: string): Promise<Buffer> => {
    try {
      return await readFile(path)
    } catch (err) {
      throw fail(`cannot read ${w} ${path}: ${(err as Error).message}`, err)
    }
  }
  const run = async (cmd: string, args: string[], opts: { cwd?: string, signal?: AbortSignal, input?: Buffer } = {}): Promise<Buffer> => {
    return await new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'], signal: opts.signal })
      const out: Buffer[] = []
      const err: Buffer[] = []
      child.stdout.on('data', (b: Buffer) => out.push(b))
      child.stderr.on('data', (b: Buffer) => err.push(b))
      child.on('error', e => {
        if ((e as { name?: string }).name === 'AbortError') reject(new CancelledError(what))
        else reject(fail(`cannot run ${cmd}: ${e.message}`, e))
      })
      child.on('close', (code, sig) => {
        if (code === 0) resolve(Buffer.concat(out))
        else reject(fail(`\`${cmd} ${args.join(' ')}\` exited ${code ?? sig}: ${Buffer.concat(err).toString().trim().split('\n').slice(-8).join('\n')}`))
      })
      child.stdin.end(opts.input)
    })
  }
  const decompressModule = async (path: string, data: Buffer, signal?: AbortSignal): Promise<Buffer> => {
    if (path.endsWith('.ko')) return data
    if (path.endsWith('.ko.gz')) return gunzipSync(data)
    if (path.endsWith('.ko.xz')) return await run('xz', ['-dc'], { input: data, ...(signal !== undefined ? { signal } : {}) })
    if (path.endsWith('.ko.zst')) return await run('zstd', ['-dc'], { input: data, ...(signal !== undefined ? { signal } : {}) })
    throw fail(`do not know how to decompress module ${path}`)
  }
  const install = async (tmp: string, dir: string, force: boolean, isComplete: () => Promise<boolean>): Promise<void> => {
    try {
      await rename(tmp, dir)
      return
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw fail(`cannot install ${dir}`, err)
    }
    if (!force && await isComplete()) {
      await rm(tmp, { recursive: true, force: true })
      return
    }
    // Forced rebuild, or a leftover incomplete directory: move it aside, then install ours.
    const aside = `${dir}.old-${process.pid}-${randomBytes(4).toString('hex')}`
    try {
      await rename(dir, aside)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fail(`cannot replace ${dir}`, err)
    }
    try {
      await rename(tmp, dir)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && await isComplete()) {
        await rm(tmp, { recursive: true, force: true })
      } else {
        throw fail(`cannot install ${dir}`, err)
      }
    }
    await rm(aside, { recursive: true, force: true })
  }
  return { sha256, exists, readInput, run, decompressModule, install }
}
