/**
 * Loads supercloud.yaml: YAML (with source positions) → JSON Schema validation (schema.ts,
 * schema-issues.ts) → semantic checks (normalize.ts and sections/*: references, subnets,
 * addresses, names) → the normalized Spec of core/spec.ts. Every problem becomes a SpecIssue
 * naming file, line, column and dotted field; all issues are reported together in one
 * SpecError, sorted by line.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { Ajv, type ValidateFunction } from 'ajv'
import { isScalar, LineCounter, parseDocument, visit, type Document } from 'yaml'
import { SpecError, type SpecIssue } from '../../core/errors.ts'
import type { Spec } from '../../core/spec.ts'
import { checkValue, specSchema, type ValueKind } from './schema.ts'
import { formatPath, Locator, type SpecPath } from './locate.ts'
import { schemaIssue } from './schema-issues.ts'
import { isObject } from './raw.ts'
import { normalize, type ParseOptions } from './normalize.ts'

export type { ParseOptions } from './normalize.ts'

let validator: ValidateFunction | undefined

function schemaValidator (): ValidateFunction {
  if (validator !== undefined) return validator
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true })
  ajv.addKeyword({
    keyword: 'parse',
    schemaType: 'string',
    validate: (kind: ValueKind, data: unknown) => checkValue(kind, data) === undefined
  })
  validator = ajv.compile(specSchema)
  return validator
}

export async function loadSpec (file: string, opts: ParseOptions = {}): Promise<Spec> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const message = code === 'ENOENT'
      ? 'spec file not found'
      : code === 'EISDIR'
        ? 'is a directory; expected a supercloud.yaml file'
        : `cannot read spec file: ${(err as Error).message}`
    throw new SpecError([{ file, line: 0, column: 0, field: '(file)', message }])
  }
  return parseSpec(text, file, { readKeyFile: p => readFileSync(p, 'utf8'), ...opts })
}

/** Parses and validates spec text (no I/O). `file` is used in messages and to resolve relative paths. */
export function parseSpec (text: string, file: string, opts: ParseOptions = {}): Spec {
  const lines = new LineCounter()
  // yaml's own duplicate-key check compares each key with every earlier one (seconds at 10,000 VMs): ours below is one pass.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false })
  const issues: SpecIssue[] = []

  const yamlProblems = [...doc.errors.map(e => ({ pos: e.pos[0], message: yamlMessage(e.message) })), ...duplicateKeys(doc)]
  if (yamlProblems.length > 0) {
    for (const e of yamlProblems) {
      const p = lines.linePos(e.pos)
      issues.push({ file, line: p.line, column: p.col, field: '(yaml)', message: e.message })
    }
    throw new SpecError(sortIssues(issues))
  }

  const locator = new Locator(doc, lines)
  const seen = new Set<string>()
  const report = (p: SpecPath, message: string, which: 'key' | 'value' = 'value'): void => {
    const field = formatPath(p)
    const pos = locator.position(p, which)
    const id = `${field}\0${message}`
    if (seen.has(id)) return
    seen.add(id)
    issues.push({ file, line: pos.line, column: pos.column, field, message })
  }

  let raw: unknown
  try {
    raw = doc.toJS({ maxAliasCount: 1000 })
  } catch (err) {
    report([], `cannot read the YAML: ${(err as Error).message}`)
    throw new SpecError(issues)
  }
  if (raw === null || raw === undefined) {
    report([], 'the spec is empty; expected a map with sites, hosts, images and vms')
    throw new SpecError(issues)
  }

  const validate = schemaValidator()
  const schemaFields = new Set<string>()
  if (validate(raw) !== true) {
    for (const e of validate.errors ?? []) {
      const mapped = schemaIssue(e, raw)
      if (mapped === undefined) continue
      schemaFields.add(formatPath(mapped.path))
      report(mapped.path, mapped.message, mapped.which)
    }
  }
  if (!isObject(raw)) throw new SpecError(sortIssues(issues))

  const spec = normalize(raw, file, opts, (p, message, which) => {
    // A field the schema already rejected needs no second, derived complaint.
    if (!schemaFields.has(formatPath(p))) report(p, message, which)
  })
  if (issues.length > 0) throw new SpecError(sortIssues(issues))
  return spec
}

/** Keys repeated in a mapping (scalars of equal value, as yaml's own check compares them), at the repeated key. */
function duplicateKeys (doc: Document): Array<{ pos: number, message: string }> {
  const out: Array<{ pos: number, message: string }> = []
  visit(doc, {
    Map: (_key, map) => {
      const seen = new Set<unknown>()
      for (const pair of map.items) {
        if (!isScalar(pair.key)) continue
        if (seen.has(pair.key.value)) out.push({ pos: pair.key.range?.[0] ?? 0, message: 'Map keys must be unique' })
        else seen.add(pair.key.value)
      }
    }
  })
  return out
}

function sortIssues (issues: SpecIssue[]): SpecIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.column - b.column || a.field.localeCompare(b.field))
}

function yamlMessage (message: string): string {
  // yaml's messages sometimes end with a source excerpt even without prettyErrors; keep the first line.
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '').trim()
}
