/** "Did you mean" hints for misspelt names and keys (pure). */

/** The closest candidate within a small edit distance, for "did you mean" hints. */
export function suggest (input: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestDistance = Infinity
  const limit = input.length <= 3 ? 1 : Math.max(2, Math.floor(input.length / 3))
  for (const c of candidates) {
    const d = editDistance(input.toLowerCase(), c.toLowerCase())
    if (d <= limit && d < bestDistance) { best = c; bestDistance = d }
  }
  return best
}

/** Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
function editDistance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)))
  const at = (i: number, j: number): number => d[i]?.[j] ?? Infinity
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1)
      const row = d[i]
      if (row !== undefined) row[j] = v
    }
  }
  return at(a.length, b.length)
}
