/** The project's TypeScript sources, for tests that read the code itself (layers, error codes). */
import { readdirSync, statSync } from 'node:fs'
import path from 'node:path'

export const ROOT = path.resolve(import.meta.dirname, '..', '..')

/** Every .ts file below `dir` (absolute paths). */
export function sourcesUnder (dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir)) {
    const p = path.join(dir, e)
    if (statSync(p).isDirectory()) out.push(...sourcesUnder(p))
    else if (p.endsWith('.ts')) out.push(p)
  }
  return out
}
