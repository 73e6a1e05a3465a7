/**
 * The table of error codes (core/error-codes.ts) against docs/errors.md and the sources: every code
 * thrown is listed and documented, every documented code is listed, and none listed is dead.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT as root, sourcesUnder as sources } from '../../helpers/sources.ts'
import { ERROR_CODES, isErrorCode } from '../../../core/error-codes.ts'
import { AgentError } from '../../../core/errors.ts'

const SOURCE_DIRS = ['core', 'blanket-manager', 'drivers', 'virtualwire', 'overdriver', 'images']

const files = SOURCE_DIRS.flatMap(d => sources(path.join(root, d))).filter(f => !f.endsWith(path.join('core', 'error-codes.ts')))
const quoted = new Map<string, string>()
for (const f of files) {
  for (const m of readFileSync(f, 'utf8').matchAll(/'(SC_[A-Z0-9_]+)'/g)) quoted.set(m[1] as string, path.relative(root, f))
}
/** Codes in the first column of docs/errors.md's table rows. */
const documented = new Set<string>()
for (const line of readFileSync(path.join(root, 'docs/errors.md'), 'utf8').split('\n')) {
  const first = line.startsWith('|') ? line.split('|')[1] ?? '' : ''
  for (const m of first.matchAll(/SC_[A-Z0-9_]+/g)) documented.add(m[0])
}

t.test('every listed code is documented in docs/errors.md, and every documented code is listed', async t => {
  t.strictSame(ERROR_CODES.filter(c => !documented.has(c)), [], 'listed but not documented')
  t.strictSame([...documented].filter(c => !isErrorCode(c)), [], 'documented but not listed')
})

t.test('no listed code is dead: each is used in the sources', async t => {
  t.strictSame(ERROR_CODES.filter(c => !quoted.has(c)), [])
})

t.test('every SC_ code string in the sources is listed', async t => {
  t.strictSame([...quoted].filter(([c]) => !isErrorCode(c)).map(([c, f]) => `${c} (${f})`), [])
})

t.test('codes are unique', async t => {
  t.equal(new Set(ERROR_CODES).size, ERROR_CODES.length)
})

t.test('an agent code that is not ours becomes SC_AGENT_INTERNAL and keeps the code in the message', async t => {
  const e = new AgentError('SC_FROM_THE_FUTURE', 'h1: boom')
  t.equal(e.code, 'SC_AGENT_INTERNAL')
  t.match(e.message, /SC_FROM_THE_FUTURE/)
  t.equal(new AgentError('SC_AGENT_GONE', 'x').code, 'SC_AGENT_GONE')
})
