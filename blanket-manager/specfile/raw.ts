/**
 * Helpers shared by the spec normalizers (normalize.ts and sections/*): reading the raw YAML
 * values that already passed the JSON Schema, and the context each section reports through.
 */
import { suggest } from '../../core/suggest.ts'
import type { SpecPath } from './locate.ts'
import type { NAME_LIMITS } from './names.ts'

/** Reports a problem at a spec field (its key or its value). */
export type Report = (path: SpecPath, message: string, which?: 'key' | 'value') => void
export type Obj = Record<string, unknown>

/** What every section normalizer shares: reporting, paths, names and the address book. */
export interface NormalizeContext {
  report: Report
  /** Resolves a path from the spec: `~` → home, relative → the spec's directory. */
  resolvePath: (p: string) => string
  /** Reports a bad name of `kind` at `at` (its key). */
  checkName: (kind: keyof typeof NAME_LIMITS, name: string, at: SpecPath) => void
  /** Claims an IPv4 address for `owner`; reports and returns false when another owner has it. */
  claim: (addr: number, owner: string, at: SpecPath) => boolean
}

export function isObject (v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

export function entries (v: unknown): Array<[string, unknown]> {
  return isObject(v) ? Object.entries(v) : []
}

export function str (v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

export function tryParse (fn: (v: string | number) => number, v: unknown): number | undefined {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined
  try { return fn(v) } catch { return undefined }
}

export function unknownRef (kind: string, name: string, known: string[]): string {
  const guess = suggest(name, known)
  const list = known.length > 0 ? `; defined ${kind}s: ${known.join(', ')}` : `; no ${kind}s are defined`
  return `unknown ${kind} '${name}'${guess !== undefined ? ` (did you mean '${guess}'?)` : list}`
}

export const MIB = 1024 ** 2
