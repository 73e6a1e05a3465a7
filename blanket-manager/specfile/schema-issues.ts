/** JSON Schema (ajv) errors → spec issues with a field path and a message a user can act on. */
import type { ErrorObject } from 'ajv'
import { suggest } from '../../core/suggest.ts'
import { checkValue, VALUE_EXAMPLES, type ValueKind } from './schema.ts'
import { pointerToPath, type SpecPath } from './locate.ts'

export interface MappedIssue { path: SpecPath, message: string, which: 'key' | 'value' }

/** One ajv error as an issue, or undefined when another error carries the details. */
export function schemaIssue (e: ErrorObject, data: unknown): MappedIssue | undefined {
  const at = pointerToPath(e.instancePath, data)
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>
  const params = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'if':
      return undefined // the failing branch reports the details
    case 'additionalProperties': {
      const key = String(params.additionalProperty)
      const known = Object.keys((parent.properties ?? {}) as Record<string, unknown>)
      const guess = suggest(key, known)
      const hint = guess !== undefined ? ` (did you mean '${guess}'?)` : known.length > 0 ? `; known keys: ${known.join(', ')}` : ''
      return { path: [...at, key], message: `unknown key '${key}'${hint}`, which: 'key' }
    }
    case 'required':
      return { path: at, message: `missing required field '${String(params.missingProperty)}'`, which: 'key' }
    case 'type': {
      const kind = parent.parse as ValueKind | undefined
      const expected = kind !== undefined ? VALUE_EXAMPLES[kind] : describeTypes(String(params.type))
      return { path: at, message: `expected ${expected}, got ${describeValue(e.data)}`, which: 'value' }
    }
    case 'parse':
      return { path: at, message: checkValue(e.schema as ValueKind, e.data) ?? 'invalid value', which: 'value' }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String)
      const guess = typeof e.data === 'string' ? suggest(e.data, allowed) : undefined
      return {
        path: at,
        message: `expected one of ${allowed.join(', ')}, got ${describeValue(e.data)}${guess !== undefined ? ` (did you mean '${guess}'?)` : ''}`,
        which: 'value'
      }
    }
    case 'minimum':
      return { path: at, message: `must be at least ${String(params.limit)}, got ${describeValue(e.data)}`, which: 'value' }
    case 'maximum':
      return { path: at, message: `must be at most ${String(params.limit)}, got ${describeValue(e.data)}`, which: 'value' }
    case 'minLength':
      return { path: at, message: 'must not be empty', which: 'value' }
    default:
      return { path: at, message: e.message ?? `fails ${e.keyword}`, which: 'value' }
  }
}

function describeTypes (types: string): string {
  const names: Record<string, string> = {
    object: 'a map', array: 'a list', string: 'text', integer: 'a whole number', number: 'a number', boolean: 'true or false'
  }
  return types.split(',').filter(t => t !== 'null').map(t => names[t] ?? t).join(' or ')
}

function describeValue (value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a map'
  if (typeof value === 'string') return `'${value}'`
  return String(value)
}
