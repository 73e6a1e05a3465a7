/**
 * Who may log in to a supercloud's hosts (pure; access/remote.ts edits the file over SSH).
 *
 * Operator keys are public keys only, one OpenSSH line each: `ssh-ed25519`, `ecdsa-sha2-nistp*`
 * or `ssh-rsa` of at least 2048 bits, no options prefix (`command=...`, `from=...`), no newline.
 * On each host, the login user's authorized_keys holds a block managed by supercloud, between a
 * BEGIN and an END line naming the supercloud: exactly the keys the supercloud needs (the key of
 * the controller running `up`) and its operators' keys. Lines outside the block are left as they
 * are; an operator removed (spec or `access revoke`) is gone from the block at the next `up`.
 */
import { createHash } from 'node:crypto'
import { SupercloudError } from '../../core/errors.ts'

/** A public key a user gave (a spec's `operators:`, `access grant`) is not one we accept. */
export class OperatorKeyError extends SupercloudError {
  constructor (readonly problem: string, where: string) {
    super('SC_OPERATOR_KEY', `${where}: ${problem}`, { exitCode: 2 })
  }
}

/** A checked public key: its type, its base64 blob and its fingerprint (SHA256:...). */
export interface PublicKey {
  type: string
  blob: string
  fingerprint: string
}

/** One line of the managed block: who and which key. */
export interface AuthorizedEntry {
  /** `controller` (the supercloud's own key) or an operator's name. */
  name: string
  key: PublicKey
}

const ECDSA: Record<string, string> = { 'ecdsa-sha2-nistp256': 'nistp256', 'ecdsa-sha2-nistp384': 'nistp384', 'ecdsa-sha2-nistp521': 'nistp521' }
const TYPES = new Set(['ssh-ed25519', 'ssh-rsa', ...Object.keys(ECDSA)])
const MIN_RSA_BITS = 2048

/** The reserved name of the block's line for the controller's own key. */
export const CONTROLLER_ENTRY = 'controller'

/** An operator's name: what `access grant NAME` and the spec's `operators[].name` accept. */
export const OPERATOR_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/

/** Reads SSH wire strings (uint32 length + bytes) from a key blob. */
function wireStrings (buf: Buffer): Buffer[] | undefined {
  const out: Buffer[] = []
  let at = 0
  while (at < buf.length) {
    if (at + 4 > buf.length) return undefined
    const len = buf.readUInt32BE(at)
    if (at + 4 + len > buf.length) return undefined
    out.push(buf.subarray(at + 4, at + 4 + len))
    at += 4 + len
  }
  return out
}

/** Bits of an SSH mpint (big-endian, a leading zero byte for a positive number with its top bit set). */
function mpintBits (b: Buffer): number {
  let i = 0
  while (i < b.length && b[i] === 0) i++
  if (i === b.length) return 0
  return (b.length - i - 1) * 8 + (32 - Math.clz32(b[i] ?? 0))
}

/** Why the blob does not hold a key of `type`, or undefined when it does. */
function blobProblem (type: string, blob: Buffer): string | undefined {
  const parts = wireStrings(blob)
  if (parts === undefined || parts[0]?.toString('latin1') !== type) return `the key data is not an ${type} key`
  if (type === 'ssh-ed25519') return parts.length === 2 && parts[1]?.length === 32 ? undefined : 'the ssh-ed25519 key data is malformed'
  if (type === 'ssh-rsa') {
    const n = parts[2]
    if (parts.length !== 3 || n === undefined) return 'the ssh-rsa key data is malformed'
    const bits = mpintBits(n)
    return bits < MIN_RSA_BITS ? `an ssh-rsa key of ${bits} bits is too short (at least ${MIN_RSA_BITS})` : undefined
  }
  return parts.length === 3 && parts[1]?.toString('latin1') === ECDSA[type] ? undefined : `the ${type} key data is malformed`
}

/**
 * Checks one public key line (`type base64 [comment]`); throws OperatorKeyError naming `where`
 * (a spec field, a key file) and what is wrong.
 */
export function parsePublicKey (text: string, where: string): PublicKey {
  const line = text.replace(/\n$/, '')
  if (/PRIVATE KEY/.test(line)) throw new OperatorKeyError('this is a private key; give the public key (the .pub file)', where)
  if (/[\r\n]/.test(line)) throw new OperatorKeyError('a public key is one line; this has more than one', where)
  const [type = '', b64 = ''] = line.trim().split(/\s+/)
  if (type === '') throw new OperatorKeyError('no public key given', where)
  if (!TYPES.has(type)) {
    const options = /[=,"]/.test(type) || /^(restrict|no-[a-z-]+|cert-authority)$/.test(type)
    throw new OperatorKeyError(options
      ? `an options prefix (${type.slice(0, 40)}) is not accepted: give the key alone (type, base64, comment)`
      : `key type '${type.slice(0, 40)}' is not accepted (ssh-ed25519, ecdsa-sha2-nistp256/384/521, or ssh-rsa of ${MIN_RSA_BITS} bits or more)`, where)
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new OperatorKeyError(`the ${type} key has no base64 key data`, where)
  const blob = Buffer.from(b64, 'base64')
  const problem = blobProblem(type, blob)
  if (problem !== undefined) throw new OperatorKeyError(problem, where)
  return { type, blob: b64, fingerprint: 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '') }
}

/** The marker lines of supercloud `name`'s block. */
export function blockMarkers (supercloud: string): { begin: string, end: string } {
  return {
    begin: `# BEGIN supercloud ${supercloud}: managed by supercloud (supercloud access grant/revoke, operators: in the spec); edits inside are replaced at the next up`,
    end: `# END supercloud ${supercloud}`
  }
}

/** The tag ending each line of the block (the key's comment). */
function tag (name: string): string {
  return `supercloud:${name}`
}

/** The block's lines: each key once (the first name that brings it), in the order given. */
export function blockLines (supercloud: string, entries: readonly AuthorizedEntry[]): string[] {
  const seen = new Set<string>()
  const keys: string[] = []
  for (const e of entries) {
    if (seen.has(e.key.blob)) continue
    seen.add(e.key.blob)
    keys.push(`${e.key.type} ${e.key.blob} ${tag(e.name)}`)
  }
  if (keys.length === 0) return []
  const m = blockMarkers(supercloud)
  return [m.begin, ...keys, m.end]
}

/**
 * `current` (an authorized_keys file's text) with supercloud `name`'s block replaced by `block`
 * (blockLines; empty: the block removed). The block stays where it was (appended when new); every
 * other line is kept as it is. A BEGIN without its END (a file cut short) ends at the first line
 * that is not one of the block's keys. Applying it twice gives the same text.
 */
export function spliceBlock (current: string, supercloud: string, block: readonly string[]): string {
  const m = blockMarkers(supercloud)
  const lines = current === '' ? [] : current.replace(/\n$/, '').split('\n')
  const out: string[] = []
  let at: number | undefined
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i] ?? ''
    if (l.trim() !== m.begin) { out.push(l); continue }
    at ??= out.length
    let j = i + 1
    while (j < lines.length && (lines[j] ?? '').trim() !== m.end && / supercloud:\S+$/.test(lines[j] ?? '')) j++
    i = j < lines.length && (lines[j] ?? '').trim() === m.end ? j : j - 1
  }
  out.splice(at ?? out.length, 0, ...block)
  return out.length === 0 ? '' : out.join('\n') + '\n'
}

/** Where sshd looks for the login user's keys: the first AuthorizedKeysFile entry, `%h`/`%u`/`%%` expanded, relative to the home. */
export function authorizedKeysPath (setting: string | undefined, home: string, user: string): string {
  const first = (setting ?? '').trim().split(/\s+/)[0] ?? ''
  const raw = first === '' || first.toLowerCase() === 'none' ? '.ssh/authorized_keys' : first
  const expanded = raw.replace(/%(.)/g, (_all, c: string) => c === 'h' ? home : c === 'u' ? user : c === '%' ? '%' : `%${c}`)
  return expanded.startsWith('/') ? expanded : `${home.replace(/\/$/, '')}/${expanded}`
}
