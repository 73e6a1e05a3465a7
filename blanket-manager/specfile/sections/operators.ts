/**
 * `operators:` of a spec: who may log in to the hosts, each `{name, key}` (an OpenSSH public key
 * line) or `{name, keyFile}` (a .pub file, `~` and relative paths as elsewhere). Keys are checked
 * by access/authorized-keys.ts; a key file is read when the loader gives a reader (loadSpec does;
 * parseSpec alone leaves it to be read at `up`).
 */
import type { OperatorSpec } from '../../../core/spec.ts'
import { CONTROLLER_ENTRY, OPERATOR_NAME, OperatorKeyError, parsePublicKey } from '../../access/authorized-keys.ts'
import type { SpecPath } from '../locate.ts'
import { isObject, str, type NormalizeContext } from '../raw.ts'

/** Reads a key file (its text); throws when it cannot. */
export type ReadKeyFile = (path: string) => string

export function normalizeOperators (raw: unknown, ctx: NormalizeContext, readKeyFile?: ReadKeyFile): OperatorSpec[] {
  const out: OperatorSpec[] = []
  const names = new Set<string>()
  const list = Array.isArray(raw) ? raw : []
  list.forEach((v, i) => {
    if (!isObject(v)) return
    const at: SpecPath = ['operators', i]
    const name = str(v.name) ?? ''
    if (!OPERATOR_NAME.test(name) || name === CONTROLLER_ENTRY) ctx.report([...at, 'name'], `'${name}' is not an operator name: letters, digits, . _ @ - (up to 64, not '${CONTROLLER_ENTRY}')`)
    else if (names.has(name)) ctx.report([...at, 'name'], `operator '${name}' is listed twice`)
    names.add(name)
    const key = str(v.key)
    const keyFile = str(v.keyFile)
    if ((key === undefined) === (keyFile === undefined)) {
      ctx.report(at, 'an operator needs exactly one of key (the public key line) or keyFile (a .pub file)', 'key')
      return
    }
    const field = `operators[${i}].${key !== undefined ? 'key' : 'keyFile'}`
    const op: OperatorSpec = { name, field }
    let text = key
    if (keyFile !== undefined) {
      op.keyFile = ctx.resolvePath(keyFile)
      if (readKeyFile !== undefined) {
        try {
          text = readKeyFile(op.keyFile)
        } catch (err) {
          ctx.report([...at, 'keyFile'], `cannot read public key file ${op.keyFile}: ${(err as Error).message}`)
          return
        }
      }
    }
    if (text !== undefined) {
      try {
        parsePublicKey(text, field)
        op.key = text.trim()
      } catch (err) {
        if (!(err instanceof OperatorKeyError)) throw err
        ctx.report([...at, key !== undefined ? 'key' : 'keyFile'], err.problem)
        return
      }
    }
    out.push(op)
  })
  return out
}
