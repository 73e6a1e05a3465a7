/**
 * Layers point down: core/ imports nothing of ours outside core/; drivers/, virtualwire/,
 * overdriver/ and images/ never import blanket-manager/ (the controller, agent and CLI on top).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { ROOT as root, sourcesUnder as sources } from '../../helpers/sources.ts'


/** Repo-relative targets of a file's relative imports (static, dynamic and re-exports). */
export function importsOf (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    out.push(path.relative(root, path.resolve(path.dirname(file), m[1] as string)))
  }
  return out
}

function violations (dirs: string[], forbidden: (target: string) => boolean): string[] {
  return dirs.flatMap(d => sources(path.join(root, d)).flatMap(f =>
    importsOf(f).filter(forbidden).map(target => `${path.relative(root, f)} -> ${target}`)))
}

t.test('core/ imports nothing of ours outside core/', async t => {
  t.strictSame(violations(['core'], target => !target.startsWith('core/')), [])
})

t.test('drivers/, virtualwire/, overdriver/, images/ do not import blanket-manager/', async t => {
  t.strictSame(violations(['drivers', 'virtualwire', 'overdriver', 'images'], target => target.startsWith('blanket-manager/')), [])
})
