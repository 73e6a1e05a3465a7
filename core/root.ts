/**
 * The one way our code finds the project's own files (shell scripts, the dashboard's assets,
 * the price table, scripts started as separate processes): paths from the project root, the
 * nearest directory above this module whose package.json is the project's. Found from this
 * module's own location, so it is the same whether the code runs from the TypeScript sources
 * or from the CLI's bundle (dist/cli/ inside the checkout). Looked up on first use, never at
 * import: a bundle that runs outside the checkout (the endpoint daemon on a host) imports
 * modules that use this and must not fail unless it asks for a file of the checkout.
 * Imports nothing of ours.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** `name` in the project's package.json. */
export const PROJECT_NAME = 'supercloud'

function packageName (dir: string): string | undefined {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }
    return typeof pkg.name === 'string' ? pkg.name : undefined
  } catch {
    return undefined
  }
}

/** The nearest directory at or above `from` whose package.json names the project, if any. */
export function findProjectRoot (from: string, name = PROJECT_NAME): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    if (packageName(dir) === name) return dir
    if (dirname(dir) === dir) return undefined
  }
}

let root: string | undefined

/** The project's root directory (the checkout this code runs from). */
export function projectRoot (): string {
  if (root === undefined) {
    const here = dirname(fileURLToPath(import.meta.url))
    const found = findProjectRoot(here)
    if (found === undefined) throw new Error(`no directory above ${here} has a package.json named ${PROJECT_NAME}: this code runs outside the supercloud checkout`)
    root = found
  }
  return root
}

/** A path inside the project, e.g. projectPath('drivers', 'ec2', 'prices.json'). */
export function projectPath (...parts: string[]): string {
  return join(projectRoot(), ...parts)
}
