/**
 * Pure: the TLS parts of a QEMU live migration (no I/O). Both streams of a migration, the memory
 * stream (`migrate` / `migrate-incoming`) and the disk mirror (the destination's NBD server and
 * the source's `nbd` block nodes), run over TLS with a pre-shared key drawn for this migration
 * (QEMU's `tls-creds-psk`):
 *   destination: tls-creds-psk endpoint=server whose key file holds exactly one identity, the
 *     migration's; `nbd-server-start` and the migration parameter `tls-creds` use it, so a
 *     client without that identity and key fails the handshake on either port;
 *   source: tls-creds-psk endpoint=client with `username` = the identity; the `nbd` block nodes
 *     and the migration parameter `tls-creds` use it.
 * The key file holding one identity is the authorization list: QEMU 7.2 does not consult
 * `tls-authz` for PSK sessions (only x509 DNs), so an authz object would promise nothing.
 */
import { migrationTlsProblem, type MigrationSecurity, type MigrationTls } from '../../core/migration.ts'
import { SupercloudError } from '../../core/errors.ts'

/** A migration asked without its credentials (or with malformed ones): nothing was started. */
export class MigrationTlsMissingError extends SupercloudError {
  constructor (guest: string, side: 'incoming' | 'outgoing', detail: string) {
    super('SC_MIGRATION_TLS_MISSING', `migration of ${guest} (${side}) refused: ${detail}. Every QEMU migration runs over TLS with the pre-shared key the controller draws for it; ask through the controller (supercloud migrate), or pass tls: 'off' explicitly for clear text`, { exitCode: 2 })
  }
}

/** QOM id of the migration's credentials object (one migration per QEMU process at a time). */
export const TLS_CREDS_ID = 'sc-mig-tls'

/** Directory under the guest's run dir holding the key file while the destination listens (mode 0700; files 0600). */
export const TLS_DIR = 'mig-tls'

/**
 * RFC 7919 ffdhe2048 group, handed to the server so that DHE-PSK does not make QEMU generate DH
 * parameters at object-add (about 2 s). ECDHE-PSK, which GnuTLS prefers, does not use it.
 */
export const FFDHE2048_PEM = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`

/** The migration's security as given, or SC_MIGRATION_TLS_MISSING when absent or malformed. */
export function requireSecurity (guest: string, side: 'incoming' | 'outgoing', sec: MigrationSecurity | undefined): MigrationSecurity {
  if (sec === undefined) throw new MigrationTlsMissingError(guest, side, 'no TLS credentials were given')
  if (sec === 'off') return sec
  const problem = migrationTlsProblem(sec)
  if (problem !== undefined) throw new MigrationTlsMissingError(guest, side, `the TLS credentials are malformed (${problem})`)
  return sec
}

/** QEMU's PSK key file (`keys.psk`): `identity:hexkey`, one line. */
export function pskKeyFile (tls: MigrationTls): string {
  return `${tls.identity}:${tls.key}\n`
}

/** `object-add` arguments of the credentials: the server reads `dir`/keys.psk at each handshake, the client reads it once, at object-add. */
export function credsObject (endpoint: 'server' | 'client', dir: string, tls: MigrationTls): Record<string, unknown> {
  return {
    'qom-type': 'tls-creds-psk',
    id: TLS_CREDS_ID,
    dir,
    endpoint,
    ...(endpoint === 'client' ? { username: tls.identity } : {})
  }
}

/** `nbd-server-start` arguments: the disk exports, behind the credentials when there are any. */
export function nbdServerArgs (listenIp: string, port: number, sec: MigrationSecurity): Record<string, unknown> {
  return {
    addr: { type: 'inet', data: { host: listenIp, port: String(port) } },
    ...(sec !== 'off' ? { 'tls-creds': TLS_CREDS_ID } : {})
  }
}

/** `blockdev-add` arguments of the source's node writing to the destination's export `exportName`. */
export function nbdTargetArgs (nodeName: string, destIp: string, port: number, exportName: string, sec: MigrationSecurity): Record<string, unknown> {
  return {
    driver: 'nbd',
    'node-name': nodeName,
    server: { type: 'inet', host: destIp, port: String(port) },
    export: exportName,
    ...(sec !== 'off' ? { 'tls-creds': TLS_CREDS_ID } : {})
  }
}

/**
 * Migration parameters for the stream: `tls-creds` names the credentials, or is '' (clear text;
 * also what a QEMU that ran a TLS migration before is put back to). Never `tls-hostname`: PSK
 * checks no certificate name.
 */
export function migrationTlsParams (sec: MigrationSecurity): Record<string, string> {
  return { 'tls-creds': sec !== 'off' ? TLS_CREDS_ID : '' }
}
