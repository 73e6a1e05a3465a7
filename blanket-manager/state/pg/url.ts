/** State URLs: which PostgreSQL a supercloud's state is in, and how to name it without its password. */
import { StateUrlError } from '../errors.ts'

export interface PgTarget {
  /** What node-postgres connects with. */
  connectionString: string
  /** The URL without its password, for messages. */
  display: string
}

/** Whether `url` selects the PostgreSQL store. */
export function isPgUrl (url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url)
}

/** Checks a postgres:// URL; StateUrlError naming what is wrong (the password never appears in it). */
export function parsePgUrl (url: string): PgTarget {
  const display = url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@/]*@/i, '$1***@')
  // A unix-socket URL may leave the host out (postgres://user@/db?host=/run/postgresql), which
  // WHATWG URLs do not allow: it is checked with a stand-in host.
  const hostless = /^[a-z]+:\/\/([^/@]*@)?\//i.test(url)
  let u: URL
  try {
    u = new URL(hostless ? url.replace(/^([a-z]+:\/\/(?:[^/@]*@)?)\//i, '$1stand-in/') : url)
  } catch {
    throw new StateUrlError(display, 'it cannot be parsed')
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new StateUrlError(display, `the scheme is ${u.protocol.replace(/:$/, '')}, not postgres`)
  const socket = u.searchParams.get('host') ?? ''
  if ((hostless || u.hostname === '') && socket === '') throw new StateUrlError(display, 'it names no host')
  if (u.pathname.replace(/^\//, '') === '') throw new StateUrlError(display, 'it names no database')
  return { connectionString: url, display }
}
