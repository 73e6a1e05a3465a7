/** The local driver's files under <dir>/local and <dir>/hosts, written with in-process locks. */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext } from '../cloud.ts'
import type { OperationOptions, ProgressPhase } from '../../core/progress.ts'

export function driverDir (ctx: DriverContext): string {
  return join(ctx.dir, 'local')
}

export function hostDirOf (ctx: DriverContext, host: string): string {
  return join(ctx.dir, 'hosts', host)
}

export function progress (opts: OperationOptions | undefined, subject: string, phase: ProgressPhase, message: string): void {
  opts?.onProgress?.({ subject, phase, message })
}

/** Serialises read-modify-write of one file within this process. */
const fileLocks = new Map<string, Promise<unknown>>()
export async function withFileLock<T> (path: string, fn: () => Promise<T>): Promise<T> {
  const prev = fileLocks.get(path) ?? Promise.resolve()
  const next = prev.then(fn, fn)
  fileLocks.set(path, next.catch(() => undefined))
  return await next
}

export async function readJson<T> (path: string, fallback: T): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return fallback
  }
}

export async function writeIfChanged (path: string, text: string, mode = 0o644): Promise<boolean> {
  const old = await readFile(path, 'utf8').catch(() => undefined)
  if (old === text) return false
  await writeFile(path, text, { mode })
  return true
}
