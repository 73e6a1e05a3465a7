/**
 * What every image recipe (images/guest, images/xen-host) needs around its own packing:
 * hashing, reading inputs (the host's kernel, its modules, busybox), running a tool,
 * decompressing kernel modules, and installing the finished directory into the
 * content-addressed cache atomically. Errors are the recipe's own typed error (`fail`), so a
 * user sees which image failed.
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { constants as fsc } from 'node:fs'
import { access, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { CancelledError, throwIfAborted } from '../../core/errors.ts'
import type { ProgressEvent, ProgressPhase } from '../../core/progress.ts'
import { newestKernelVersion, parseModulesBuiltin, parseModulesDep, resolveModules, UnknownModuleError } from '../guest/modules.ts'

export const BOOT_DIR = '/boot'
export const MODULES_ROOT = '/lib/modules'
/** The static busybox every image's userland is. */
export const BUSYBOX = '/bin/busybox'

export function sha256 (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/** The host's newest kernel (the one every image boots). */
export interface HostKernel {
  /** e.g. 6.1.0-56-amd64 */
  kernelVersion: string
  /** /boot/vmlinuz-<version> */
  kernelPath: string
  kernel: Buffer
  /** The /boot listing, for a recipe's other boot files (Xen's hypervisor). */
  bootFiles: string[]
}

/** A kernel module as it goes into an image: uncompressed, under its modprobe name. */
export interface KernelModule {
  name: string
  /** Relative to /lib/modules/<version>, as modules.dep names it. */
  path: string
  data: Buffer
}

/** Reports one progress event for `subject` (e.g. "image tiny"). */
export type Progress = (phase: ProgressPhase, message: string, fraction?: number) => void

export function progressReporter (subject: string, onProgress?: (ev: ProgressEvent) => void): Progress {
  return (phase, message, fraction) => {
    const ev: ProgressEvent = { subject, phase, message }
    if (fraction !== undefined) ev.fraction = fraction
    onProgress?.(ev)
  }
}

export interface BuildKit {
  /** The build, for cancel messages ("guest image build"). */
  what: string
  /** The recipe's typed error. */
  fail: (detail: string, cause?: unknown) => Error
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
  /** The newest kernel in /boot, read. */
  hostKernel: () => Promise<HostKernel>
  /** `names` and everything they depend on (dependencies first; built-ins left out), uncompressed. */
  kernelModules: (kernelVersion: string, names: readonly string[], signal?: AbortSignal) => Promise<KernelModule[]>
  /** The static busybox binary. */
  busybox: () => Promise<Buffer>
  /** The paths busybox installs its applets at (`busybox --list-full`), e.g. "sbin/ip". */
  busyboxApplets: (signal?: AbortSignal) => Promise<string[]>
}

/** `what`: the build, for cancel messages ("guest image build"); `fail`: the recipe's typed error. */
export function buildKit (what: string, fail: (detail: string, cause?: unknown) => Error): BuildKit {
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
  const hostKernel = async (): Promise<HostKernel> => {
    let bootFiles: string[]
    try { bootFiles = await readdir(BOOT_DIR) } catch (err) { throw fail(`cannot list ${BOOT_DIR}`, err) }
    const kernelVersion = newestKernelVersion(bootFiles)
    if (kernelVersion === undefined) throw fail(`no vmlinuz-* in ${BOOT_DIR} (install linux-image-amd64)`)
    const kernelPath = join(BOOT_DIR, `vmlinuz-${kernelVersion}`)
    return { kernelVersion, kernelPath, kernel: await readInput(kernelPath, 'kernel'), bootFiles }
  }
  const kernelModules = async (kernelVersion: string, names: readonly string[], signal?: AbortSignal): Promise<KernelModule[]> => {
    const modDir = join(MODULES_ROOT, kernelVersion)
    const depText = (await readInput(join(modDir, 'modules.dep'), 'module index')).toString('utf8')
    const builtinText = await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')
    let resolved: Array<{ name: string, path: string }>
    try {
      resolved = resolveModules(parseModulesDep(depText), [...names], parseModulesBuiltin(builtinText))
    } catch (err) {
      if (err instanceof UnknownModuleError) throw fail(`${err.message} for kernel ${kernelVersion}`, err)
      throw err
    }
    const modules: KernelModule[] = []
    for (const m of resolved) {
      throwIfAborted(signal, what)
      const raw = await readInput(join(modDir, m.path), 'kernel module')
      modules.push({ name: m.name, path: m.path, data: await decompressModule(m.path, raw, signal) })
    }
    return modules
  }
  const busybox = async (): Promise<Buffer> => await readInput(BUSYBOX, 'busybox (install busybox-static)')
  const busyboxApplets = async (signal?: AbortSignal): Promise<string[]> =>
    (await run(BUSYBOX, ['--list-full'], { signal })).toString().split('\n').map(s => s.trim()).filter(s => s !== '')
  return { what, fail, exists, readInput, run, decompressModule, install, hostKernel, kernelModules, busybox, busyboxApplets }
}
