/**
 * Stable hashes of normalized spec objects. The planner stores the hash of each VM's and
 * host's spec with the resource and compares it on the next `up` to detect updates.
 * Key order never matters; array order does (disk and NIC order is meaningful);
 * properties whose value is `undefined` are the same as absent ones.
 */
import { createHash } from 'node:crypto'
import type { HostSpec, VmSpec } from '../../core/spec.ts'

/** JSON with object keys sorted recursively and undefined properties dropped. */
export function canonicalJson (value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (value === undefined) return 'null'
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null'
    if (typeof value === 'bigint') return JSON.stringify(value.toString())
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj).filter(k => obj[k] !== undefined).sort()
  return `{${keys.map(k => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`
}

/** sha256 (hex) of the canonical JSON of any value. */
export function stableHash (value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex')
}

/** Hash of one VM's normalized spec. */
export function hashVm (vm: VmSpec): string {
  return stableHash({ kind: 'vm', spec: vm })
}

/** Hash of one host's normalized spec. */
export function hashHost (host: HostSpec): string {
  return stableHash({ kind: 'host', spec: host })
}
