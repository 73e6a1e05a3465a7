/**
 * SSH host key identities, as OpenSSH shows them: the SHA256 fingerprint of a key blob
 * (`SHA256:` + unpadded base64, what `ssh-keygen -lf` prints), OpenSSH public key lines, and the
 * fingerprint block cloud-init prints on an instance's console. Pure: no I/O.
 */
import { createHash } from 'node:crypto'

const KEY_TYPE = /^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/
const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

/** `SHA256:<base64 without padding>` of a public key blob (the wire-format key). */
export function fingerprintOf (blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')
}

/** Whether `s` is a SHA256 fingerprint as OpenSSH prints it. */
export function isFingerprint (s: string): boolean {
  return FINGERPRINT.test(s)
}

/** The key blob of one OpenSSH public key line (`type base64 [comment]`), or undefined when it is not one. */
export function publicKeyBlob (line: string): Buffer | undefined {
  const [type, b64] = line.trim().split(/\s+/)
  if (type === undefined || b64 === undefined || !KEY_TYPE.test(type) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return undefined
  const blob = Buffer.from(b64, 'base64')
  // The blob starts with its own type name (uint32 length + name): a line whose two disagree is not a key.
  if (blob.length < 4 + type.length || blob.readUInt32BE(0) !== type.length || blob.subarray(4, 4 + type.length).toString('latin1') !== type) return undefined
  return blob
}

/** The OpenSSH public key line (`type base64`) of a key blob (its type is the blob's first field). */
export function publicKeyLine (blob: Buffer): string {
  const n = blob.length >= 4 ? blob.readUInt32BE(0) : 0
  const type = blob.length >= 4 + n ? blob.subarray(4, 4 + n).toString('latin1') : 'unknown'
  return `${type} ${blob.toString('base64')}`
}

/**
 * The fingerprint a spec's `ssh.hostKey` names: a `SHA256:...` fingerprint as is, or the
 * fingerprint of an OpenSSH public key line. Undefined when it is neither.
 */
export function hostKeyFingerprint (value: string): string | undefined {
  const v = value.trim()
  if (isFingerprint(v)) return v
  const blob = publicKeyBlob(v)
  return blob !== undefined ? fingerprintOf(blob) : undefined
}

/** Fingerprints of every key in a known_hosts or public key file (host patterns before the type are skipped). */
export function knownHostsFingerprints (text: string): string[] {
  const out: string[] = []
  for (const line of text.split('\n')) {
    const parts = line.trim().split(/\s+/)
    const i = parts.findIndex(p => KEY_TYPE.test(p))
    if (i < 0) continue
    const blob = publicKeyBlob(parts.slice(i).join(' '))
    if (blob !== undefined) out.push(fingerprintOf(blob))
  }
  return out
}

/**
 * The SHA256 fingerprints of the block cloud-init prints on the console
 * (`-----BEGIN SSH HOST KEY FINGERPRINTS-----` ... `-----END ...`, lines like
 * `256 SHA256:abc... root@host (ED25519)`, each possibly prefixed by `ec2: `). Empty when the
 * block is not (yet, or not wholly) there; the last complete block counts (a reboot prints another).
 */
export function consoleFingerprints (output: string): string[] {
  let found: string[] = []
  let current: string[] | undefined
  for (const raw of output.split(/\r?\n/)) {
    const line = raw.replace(/^\s*(ec2:\s*)?/, '').trim()
    if (line === '-----BEGIN SSH HOST KEY FINGERPRINTS-----') { current = []; continue }
    if (line === '-----END SSH HOST KEY FINGERPRINTS-----') {
      if (current !== undefined && current.length > 0) found = current
      current = undefined
      continue
    }
    if (current === undefined) continue
    const fp = line.split(/\s+/).find(isFingerprint)
    if (fp !== undefined) current.push(fp)
  }
  return found
}

/** The block cloud-init prints for these `ssh-keygen -lf` lines (`bits SHA256:... comment (TYPE)`): what a fake cloud's console shows. */
export function consoleFingerprintBlock (keygenLines: string[]): string {
  const bar = '#'.repeat(61)
  return [bar, '-----BEGIN SSH HOST KEY FINGERPRINTS-----', ...keygenLines.map(l => l.trim()), '-----END SSH HOST KEY FINGERPRINTS-----', bar]
    .map(l => `ec2: ${l}`).join('\n') + '\n'
}
