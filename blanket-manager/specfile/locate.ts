/**
 * Maps a path inside the parsed YAML (["vms", "web1", "disks", 0, "size"]) back to the line
 * and column where it was written, so every spec error can point at its source.
 */
import { isAlias, isMap, isNode, isScalar, isSeq, type Document, type LineCounter } from 'yaml'

export type PathSegment = string | number
export type SpecPath = PathSegment[]

/** "vms.web1.disks[0].size"; the empty path is "(top level)". */
export function formatPath (path: SpecPath): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? seg : `.${seg}`
  }
  return out === '' ? '(top level)' : out
}

/** Decodes an ajv instancePath ("/vms/web1/disks/0") into segments, numbering array indices. */
export function pointerToPath (pointer: string, data: unknown): SpecPath {
  if (pointer === '') return []
  const out: SpecPath = []
  let cur: unknown = data
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (Array.isArray(cur)) {
      const i = Number(seg)
      out.push(i)
      cur = cur[i]
    } else {
      out.push(seg)
      cur = cur !== null && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined
    }
  }
  return out
}

export interface Position { line: number, column: number }

export class Locator {
  constructor (private readonly doc: Document.Parsed, private readonly lines: LineCounter) {}

  /**
   * Position of the value at `path` (or of its key with which = 'key'). When the path does not
   * exist in the document, the nearest existing ancestor's position is used.
   */
  position (path: SpecPath, which: 'key' | 'value' = 'value'): Position {
    let node: unknown = this.doc.contents
    let keyNode: unknown
    let lastGood: unknown = node
    for (const seg of path) {
      if (isAlias(node)) node = node.resolve(this.doc)
      let next: unknown
      let nextKey: unknown
      if (isMap(node)) {
        const pair = node.items.find(p => {
          const k: unknown = p.key
          const kv = isScalar(k) ? k.value : k
          return String(kv) === String(seg)
        })
        if (pair !== undefined) { next = pair.value; nextKey = pair.key }
      } else if (isSeq(node) && typeof seg === 'number') {
        next = node.items[seg]
      }
      if (next === undefined && nextKey === undefined) {
        return this.offsetOf(lastGood) ?? { line: 1, column: 1 }
      }
      node = next
      keyNode = nextKey
      lastGood = hasRange(nextKey) ? nextKey : next
    }
    const preferred = which === 'key' ? (keyNode ?? node) : (hasRange(node) ? node : keyNode)
    return this.offsetOf(preferred) ?? this.offsetOf(keyNode) ?? { line: 1, column: 1 }
  }

  /** 1-based line and column of a byte offset in the source. */
  at (offset: number): Position {
    const p = this.lines.linePos(offset)
    return { line: p.line, column: p.col }
  }

  private offsetOf (node: unknown): Position | undefined {
    if (!hasRange(node)) return undefined
    return this.at(node.range[0])
  }
}

function hasRange (node: unknown): node is { range: [number, number, number] } {
  if (!isNode(node) || node.range == null) return false
  // An empty value (`memory:` with nothing after it) is a null scalar of zero length; point at its key instead.
  if (isScalar(node) && node.value === null && node.range[0] === node.range[1]) return false
  return true
}
