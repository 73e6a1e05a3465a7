/** Key-order-independent hash of a JSON value (spec fragments, plans). */
import { createHash } from 'node:crypto'

export function stableStringify (v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null'
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`
  const o = v as Record<string, unknown>
  return `{${Object.keys(o).filter(k => o[k] !== undefined).sort().map(k => `${JSON.stringify(k)}:${stableStringify(o[k])}`).join(',')}}`
}

export function stableHash (v: unknown): string {
  return createHash('sha256').update(stableStringify(v)).digest('hex').slice(0, 16)
}
