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
  let u: URL
  const shown = url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@')
  try {
    u = new URL(url)
  } catch {
    throw new StateUrlError(shown, 'it cannot be parsed')
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new StateUrlError(shown, `the scheme is ${u.protocol.replace(/:$/, '')}, not postgres`)
  const socket = u.searchParams.get('host')
  if (u.hostname === '' && (socket === null || socket === '')) throw new StateUrlError(shown, 'it names no host')
  if (u.pathname.replace(/^\//, '') === '') throw new StateUrlError(shown, 'it names no database')
  if (u.port !== '' && !(Number(u.port) > 0 && Number(u.port) < 65536)) throw new StateUrlError(shown, `port ${u.port} is not valid`)
  const display = new URL(u.href)
  if (display.password !== '') display.password = '***'
  return { connectionString: u.href, display: decodeURIComponent(display.href) }
}
