/** Live migration's shared vocabulary: the modes a user picks and the progress every backend reports. */

export type MigrationMode = 'auto' | 'precopy' | 'postcopy' | 'hybrid'
/** Modes offered: each passed the memory-and-disk checksum test (test/e2e/migrate.spec.ts). XBZRLE is not offered. */
export const MIGRATION_MODES: MigrationMode[] = ['auto', 'precopy', 'postcopy', 'hybrid']

export type MigrationPhase = 'preparing' | 'disks' | 'memory' | 'postcopy' | 'switchover' | 'completed' | 'failed' | 'cancelled'

export interface MigrationProgress {
  phase: MigrationPhase
  /** Bytes sent so far (RAM + disk mirror). Never decreases. */
  sentBytes: number
  /** Bytes still to send as QEMU estimates them. */
  remainingBytes: number
  /** Guest dirty rate, bytes/s. */
  dirtyRate: number
  /** Precopy iteration (dirty sync count). */
  iteration: number
  /** 0..1, never decreases. */
  fraction: number
}


/**
 * The credentials of one migration's encrypted, authenticated streams (memory and disks): a
 * pre-shared key the controller draws for this migration alone and hands to both hosts over
 * their SSH sessions. The destination admits only a client that presents `identity` with `key`
 * (a TLS-PSK handshake); nobody else can open its migration or disk ports. `key` is 32 random
 * bytes, hex.
 */
export interface MigrationTls {
  identity: string
  key: string
  /**
   * Between Xen hosts, whose stream is socat's OPENSSL (x509 only, no PSK): a self-signed
   * certificate and key per end, drawn with the PSK for this migration alone. Each end pins the
   * other's certificate (its only trust anchor), so nobody without these keys completes the
   * handshake. Both ends get both keys, as both get the PSK: the same trust, another handshake.
   */
  x509?: MigrationX509
}

/** A PEM certificate and its PEM (PKCS#8) private key. */
export interface CertifiedKey {
  cert: string
  key: string
}

/** Common names of a Xen migration's two ends (socat checks the peer's against them; core/tls-cert.ts draws them). */
export const MIGRATION_SERVER_CN = 'supercloud-migration-server'
export const MIGRATION_CLIENT_CN = 'supercloud-migration-client'

/** The two ends of a Xen migration's TLS stream (MigrationTls.x509). */
export interface MigrationX509 {
  server: CertifiedKey
  client: CertifiedKey
}

/** What a migration's streams run over: TLS with these credentials, or, asked for explicitly, clear text (benchmarks). */
export type MigrationSecurity = MigrationTls | 'off'

const TLS_IDENTITY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const TLS_KEY_RE = /^[0-9a-f]{64}$/

/** Why `v` is no object of only the `allowed` fields ('not an object', 'unknown fields (only a, b and c)'), or undefined. */
function fieldsProblem (v: unknown, allowed: readonly string[]): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object'
  if (Object.keys(v).some(k => !allowed.includes(k))) return `unknown fields (only ${allowed.slice(0, -1).join(', ')} and ${allowed.at(-1) ?? ''})`
  return undefined
}

/** Why `v` is no MigrationTls (undefined when it is one): a PSK identity may not carry ':' or spaces (the key file's syntax). */
export function migrationTlsProblem (v: unknown): string | undefined {
  const shape = fieldsProblem(v, ['identity', 'key', 'x509'])
  if (shape !== undefined) return shape
  const o = v as Record<string, unknown>
  if (typeof o.identity !== 'string' || !TLS_IDENTITY_RE.test(o.identity)) return 'identity must be 1-64 of A-Z a-z 0-9 . _ - (a letter or digit first)'
  if (typeof o.key !== 'string' || !TLS_KEY_RE.test(o.key)) return 'key must be 64 lowercase hex digits (32 bytes)'
  if (o.x509 !== undefined) {
    const x509 = fieldsProblem(o.x509, ['server', 'client'])
    if (x509 !== undefined) return `x509: ${x509}`
    for (const end of ['server', 'client'] as const) {
      const problem = certifiedKeyProblem((o.x509 as Record<string, unknown>)[end])
      if (problem !== undefined) return `x509.${end}: ${problem}`
    }
  }
  return undefined
}

const PEM_CERT_RE = /^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/
const PEM_KEY_RE = /^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n?$/
/** PEM text longer than this is refused (an RSA-4096 key is ~3.3 KB). */
const PEM_MAX = 8192

function certifiedKeyProblem (v: unknown): string | undefined {
  const shape = fieldsProblem(v, ['cert', 'key'])
  if (shape !== undefined) return shape
  const o = v as Record<string, unknown>
  if (typeof o.cert !== 'string' || o.cert.length > PEM_MAX || !PEM_CERT_RE.test(o.cert)) return 'cert must be one PEM certificate'
  if (typeof o.key !== 'string' || o.key.length > PEM_MAX || !PEM_KEY_RE.test(o.key)) return 'key must be one PEM (PKCS#8) private key'
  return undefined
}

export function isMigrationSecurity (v: unknown): v is MigrationSecurity {
  return v === 'off' || migrationTlsProblem(v) === undefined
}
