/**
 * Access to `supercloud serve`: a bearer token generated on first start and kept in the
 * supercloud's directory (`serve-token`, mode 0600), and `serve.json` (address, pid) while a
 * server runs, so other commands and the operator can find it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { existsSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { isAlive } from '../state/store.ts'

export const TOKEN_FILE = 'serve-token'
export const SERVE_INFO_FILE = 'serve.json'

/** The token of this supercloud's server; made (32 random bytes, hex) when there is none. */
export function ensureToken (dir: string): string {
  const p = join(dir, TOKEN_FILE)
  if (existsSync(p)) {
    const t = readFileSync(p, 'utf8').trim()
    if (/^[0-9a-f]{32,}$/.test(t)) return t
  }
  const t = randomBytes(32).toString('hex')
  writeFileSync(p + '.tmp', t + '\n', { mode: 0o600 })
  renameSync(p + '.tmp', p)
  return t
}

/** Constant-time comparison of a presented token with the real one. */
export function tokenMatches (given: string | undefined, token: string): boolean {
  if (given === undefined || given === '') return false
  const a = Buffer.from(given)
  const b = Buffer.from(token)
  return a.length === b.length && timingSafeEqual(a, b)
}

export interface ServeInfo {
  /** Base URL, without the token. */
  url: string
  host: string
  port: number
  pid: number
  started: string
}

export function writeServeInfo (dir: string, info: ServeInfo): void {
  const p = join(dir, SERVE_INFO_FILE)
  writeFileSync(p + '.tmp', JSON.stringify(info, null, 2) + '\n', { mode: 0o600 })
  renameSync(p + '.tmp', p)
}

/** The running server of this supercloud, if its process is still alive. */
export function readServeInfo (dir: string): ServeInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(join(dir, SERVE_INFO_FILE), 'utf8')) as ServeInfo
    return isAlive(info.pid) ? info : undefined
  } catch {
    return undefined
  }
}

export function removeServeInfo (dir: string, pid = process.pid): void {
  const p = join(dir, SERVE_INFO_FILE)
  try {
    const info = JSON.parse(readFileSync(p, 'utf8')) as ServeInfo
    if (info.pid === pid) rmSync(p, { force: true })
  } catch { /* none */ }
}
