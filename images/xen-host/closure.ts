/**
 * Shared-library closure of a dynamically linked binary, from `ldd` output. Pure:
 * text in, absolute paths out (the dynamic loader included).
 */

export class MissingLibraryError extends Error {
  readonly library: string
  constructor (library: string) {
    super(`shared library ${library} not found`)
    this.name = 'MissingLibraryError'
    this.library = library
  }
}

/**
 * Parses `ldd <binary>` output into the absolute paths it resolves, in order, each once.
 * Skips the vDSO; a static binary ("not a dynamic executable", "statically linked") gives [].
 * Throws MissingLibraryError for a `=> not found` line.
 */
export function parseLdd (text: string): string[] {
  const out: string[] = []
  const seen = new Set<string>()
  const add = (p: string): void => { if (!seen.has(p)) { seen.add(p); out.push(p) } }
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || /statically linked|not a dynamic executable/.test(line)) continue
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line)
    if (arrow !== null) {
      const name = arrow[1] ?? ''
      const rest = (arrow[2] ?? '').trim()
      if (rest.startsWith('not found')) throw new MissingLibraryError(name)
      const path = rest.split(/\s+/)[0] ?? ''
      if (path.startsWith('/')) add(path)
      continue
    }
    const path = line.split(/\s+/)[0] ?? ''
    if (path.startsWith('/')) add(path)
  }
  return out
}

/** The union of several closures, sorted (byte-wise) so the image does not depend on input order. */
export function unionSorted (lists: string[][]): string[] {
  return [...new Set(lists.flat())].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
}
