/**
 * Small validators for the agent protocol (pure). A Schema<T> checks an unknown value from the
 * wire and returns it as a T, or throws a FieldError naming the field (`params.launch.nics[0].tap`).
 * `obj<T>()` takes one validator per key of the interface T, so a field added to a protocol
 * interface without a validator does not typecheck. Keys a schema does not name are left as
 * they are (an older agent ignores what a newer controller adds).
 */
import { isName, isVmName, isMigrationId } from '../../core/names.ts'

/** A value on the wire that does not fit its schema: `field` is the dotted path, `why` what it must be. */
export class FieldError extends Error {
  constructor (readonly field: string, readonly why: string) {
    super(`${field}: ${why}`)
    this.name = 'FieldError'
  }
}

export interface Schema<T> {
  /** Returns `v` as a T, or throws a FieldError; `at` names the value in messages. */
  readonly parse: (v: unknown, at: string) => T
}

/** A key that may be missing (or undefined). */
export interface Optional<T> { readonly optional: Schema<T> }

export function opt<T> (s: Schema<T>): Optional<T> { return { optional: s } }

function show (v: unknown): string {
  const s = JSON.stringify(v)
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s
}

function refuse (at: string, what: string, v: unknown): never {
  throw new FieldError(at, `must be ${what}, got ${v === undefined ? 'nothing' : show(v)}`)
}

/** A schema from a type guard. */
export function guard<T> (what: string, ok: (v: unknown) => v is T): Schema<T> {
  return { parse: (v, at) => ok(v) ? v : refuse(at, what, v) }
}

export const str = guard('a string', (v): v is string => typeof v === 'string')
export const nonEmpty = guard('a non-empty string', (v): v is string => typeof v === 'string' && v !== '')
export const bool = guard('true or false', (v): v is boolean => typeof v === 'boolean')
export const num = guard('a number', (v): v is number => typeof v === 'number' && Number.isFinite(v))
/** A number >= 0 (rates, durations, sizes measured rather than set). */
export const nonNegative = guard('a number >= 0', (v): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0)
/** A whole number >= 0 (bytes, ports, milliseconds, counts). */
export const count = guard('a whole number >= 0', (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)
export const port = guard('a TCP port (1-65535)', (v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535)
/** A port to listen on: 0 lets the kernel choose. */
export const listenPort = guard('a TCP port (0-65535)', (v): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65535)

/** null on the wire (an RPC that returns nothing; undefined is accepted too). */
export const none: Schema<null> = { parse: (v, at) => v === null || v === undefined ? null : refuse(at, 'null', v) }

/** Any JSON object, not looked into (e.g. statistics only shown to the user). */
export const anyObject = guard('an object', (v): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v))

/** A VM name (core/names.ts isVmName): the agent builds directories, ids and file names from it. */
export const vmName = guard('a VM name (a-z, 0-9, \'-\', starting with a letter, at most 32)', isVmName)
/** A spec name (host, disk, NIC, switch) of at most `max` characters. */
export function specName (max: number): Schema<string> {
  return guard(`a name (a-z, 0-9, '-', starting with a letter, at most ${max})`, (v): v is string => isName(v, max))
}

/** A Linux network device name: at most 15 of A-Z a-z 0-9 _ . - (not '.' or '..'). */
export function isDeviceName (v: unknown): v is string {
  return typeof v === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(v) && v !== '.' && v !== '..'
}
export const deviceName = guard('a device name (at most 15 of A-Z a-z 0-9 _ . -)', isDeviceName)
/** The start of device names (the supercloud's prefix): as a device name, but shorter. */
export const devicePrefix = guard('a device name prefix (at most 12 of A-Z a-z 0-9 _ . -)', (v): v is string => typeof v === 'string' && /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,11}$/.test(v))
export const migrationId = guard('a migration id (8-32 hex digits)', isMigrationId)
/** An absolute path on the host (images the controller uploaded): no NUL, no '..' component. */
export function isAbsPath (v: unknown): v is string {
  return typeof v === 'string' && v.startsWith('/') && !v.includes('\0') && !v.split('/').includes('..')
}
export const absPath = guard('an absolute path without \'..\'', isAbsPath)
export const mac = guard('a MAC address (xx:xx:xx:xx:xx:xx)', (v): v is string => typeof v === 'string' && /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v))
export const hex = guard('hex digits', (v): v is string => typeof v === 'string' && /^([0-9a-f]{2})+$/.test(v))

/** One of the given strings. */
export function oneOf<const L extends readonly string[]> (...values: L): Schema<L[number]> {
  return guard(values.map(x => `'${x}'`).join(' or '), (v): v is L[number] => typeof v === 'string' && values.includes(v))
}

export function arr<T> (item: Schema<T>): Schema<T[]> {
  return {
    parse: (v, at) => {
      if (!Array.isArray(v)) return refuse(at, 'a list', v)
      v.forEach((x, i) => item.parse(x, `${at}[${i}]`))
      return v
    }
  }
}

/** A list of exactly these items. */
export function tuple<const T extends readonly unknown[]> (...items: { [K in keyof T]: Schema<T[K]> }): Schema<[...T]> {
  return {
    parse: (v, at) => {
      if (!Array.isArray(v) || v.length !== items.length) return refuse(at, `a list of ${items.length}`, v)
      items.forEach((s, i) => s.parse(v[i], `${at}[${i}]`))
      return v as [...T]
    }
  }
}

/** One validator per key of T; optional keys (those that may be undefined) take opt(). */
export type Shape<T> = { [K in keyof T]-?: undefined extends T[K] ? Optional<Exclude<T[K], undefined>> : Schema<T[K]> }

/** An object with T's fields. */
export function obj<T extends object> (shape: Shape<T>): Schema<T> {
  const entries = Object.entries(shape) as Array<[string, Schema<unknown> | Optional<unknown>]>
  return {
    parse: (v, at) => {
      const o = anyObject.parse(v, at)
      for (const [k, s] of entries) {
        if ('optional' in s) { if (o[k] !== undefined) s.optional.parse(o[k], `${at}.${k}`) } else s.parse(o[k], `${at}.${k}`)
      }
      return o as T
    }
  }
}

/** A union of objects told apart by their `kind`. */
export function byKind<T extends { kind: string }> (cases: { [K in T['kind']]: Schema<Extract<T, { kind: K }>> }): Schema<T> {
  const known: Record<string, Schema<T>> = cases
  return {
    parse: (v, at) => {
      const kind = anyObject.parse(v, at).kind
      const s = typeof kind === 'string' && Object.prototype.hasOwnProperty.call(known, kind) ? known[kind] : undefined
      if (s === undefined) return refuse(`${at}.kind`, Object.keys(known).map(x => `'${x}'`).join(' or '), kind)
      return s.parse(v, at)
    }
  }
}

/** `s`, with a further rule on the parsed value (`rule` returns what is wrong, or undefined). */
export function check<T> (s: Schema<T>, rule: (v: T) => string | undefined): Schema<T> {
  return {
    parse: (v, at) => {
      const x = s.parse(v, at)
      const wrong = rule(x)
      if (wrong !== undefined) throw new FieldError(at, wrong)
      return x
    }
  }
}
