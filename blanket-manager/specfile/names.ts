/** Names in a spec: the DNS-label-like rule, its length limits, and the name derived from a directory. */

/** Name limits (DNS-label-like: lowercase letters, digits, '-', starting with a letter). */
export const NAME_LIMITS = { supercloud: 20, site: 20, host: 20, image: 32, vm: 32, disk: 32, nic: 15, switch: 32 } as const

const NAME = /^[a-z]([a-z0-9-]*[a-z0-9])?$/

/** Checks a DNS-label-like name; returns a message or undefined. */
export function nameProblem (kind: string, name: string, max: number): string | undefined {
  if (!NAME.test(name)) {
    return `${kind} name '${name}' must use only lowercase letters, digits and '-', start with a letter and not end with '-'`
  }
  if (name.length > max) return `${kind} name '${name}' is ${name.length} characters long; the limit is ${max}`
  return undefined
}

/** A supercloud name derived from a directory name: lowercased, other characters → '-', max 20. */
export function sanitizeName (dirName: string): string {
  const s = dirName.toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, NAME_LIMITS.supercloud)
    .replace(/-+$/, '')
  return s === '' ? 'supercloud' : s
}
