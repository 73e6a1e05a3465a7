/**
 * The socket layer under the page repository protocol: how a repository listens and how a
 * client connects. The framing (./protocol.ts) runs unchanged over either transport:
 *  - TLS-PSK (what hosts use, issue 14): TLS 1.3 with a pre-shared key, ECDHE (X25519) for
 *    forward secrecy, AES-GCM or ChaCha20-Poly1305. The repository holds one credential
 *    (identity + 32-byte key) drawn by its host when it starts and handed with every grant; a
 *    client that does not present that identity with that key fails the handshake and gets
 *    nothing (no protocol byte is read or written before the handshake). The handshake
 *    authenticates both ends: only a holder of the key completes it, a server without the key
 *    cannot either (and a certificate offered instead of the key is refused). No clear text is
 *    offered: a TLS client never falls back to it, a TLS repository reads no clear request.
 *  - clear TCP: the repository's library default, for tests of the protocol and the benchmark's
 *    "TLS off" leg; the host agent never uses it.
 */
import { connect as netConnect, createServer as netCreateServer, type Server, type Socket } from 'node:net'
import { connect as tlsConnect, createServer as tlsCreateServer, type PeerCertificate, type TLSSocket } from 'node:tls'
import { randomBytes } from 'node:crypto'
import { migrationTlsProblem, type MigrationTls } from '../../core/migration.ts'
import { RepositoryError } from '../errors.ts'

/**
 * A repository's TLS-PSK credential: `identity` (1-64 of A-Z a-z 0-9 . _ -) and `key` (32
 * bytes, 64 lowercase hex digits); the same shape as a migration's credentials.
 */
export type RepositoryTls = MigrationTls

export interface RepositoryAddress { host: string, port: number }

export function formatAddress (a: RepositoryAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}

/** How a repository accepts connections. */
export interface RepositoryListener {
  readonly kind: 'tls-psk' | 'clear'
  /**
   * A server (not yet listening) that hands each connection, once usable by the protocol, to
   * `onConnection`; a connection refused before that (failed handshake) goes to `onRefused`
   * with the peer and the reason.
   */
  createServer: (onConnection: (s: Socket) => void, onRefused: (remote: string, reason: string) => void) => Server
}

/** How a client reaches a repository: resolves with a socket the protocol can use, or rejects with a RepositoryError. */
export type RepositoryConnector = (address: RepositoryAddress, timeoutMs: number) => Promise<Socket>

const TLS_VERSION = 'TLSv1.3'
/** A handshake not finished in this time is dropped (a peer that opens connections and sends nothing). */
const HANDSHAKE_TIMEOUT_MS = 10_000

/** Draws a fresh credential (a repository's, when its host starts it). */
export function newRepositoryTls (): RepositoryTls {
  return { identity: `repository-${randomBytes(6).toString('hex')}`, key: randomBytes(32).toString('hex') }
}

/** Throws a RangeError naming the problem unless `v` is a well-formed credential. */
export function checkRepositoryTls (v: unknown): RepositoryTls {
  const x509 = typeof v === 'object' && v !== null && (v as { x509?: unknown }).x509 !== undefined
  const problem = x509 ? 'x509 is not used by a repository (TLS-PSK only)' : migrationTlsProblem(v)
  if (problem !== undefined) throw new RangeError(`repository TLS credentials: ${problem}`)
  return v as RepositoryTls
}

/** `identity:hexkey`, one line: the key file of `overdriver/repository/main.ts --psk-file` and `swapd.ts` (QEMU's keys.psk format). */
export function parsePskFile (text: string): RepositoryTls {
  const m = /^([^:\s]+):([0-9a-f]+)\s*$/.exec(text)
  return checkRepositoryTls(m === null ? undefined : { identity: m[1], key: m[2] })
}

export const clearListener: RepositoryListener = {
  kind: 'clear',
  createServer: onConnection => netCreateServer(onConnection)
}

/** A TLS-PSK repository admitting only `tls.identity` with `tls.key`. */
export function pskListener (tls: RepositoryTls): RepositoryListener {
  const cred = checkRepositoryTls(tls)
  const key = Buffer.from(cred.key, 'hex')
  return {
    kind: 'tls-psk',
    createServer: (onConnection, onRefused) => {
      const presented = new WeakMap<object, string>()
      const server = tlsCreateServer({
        minVersion: TLS_VERSION,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        pskCallback: (socket, identity) => {
          presented.set(socket, identity)
          return identity === cred.identity ? key : null
        }
      }, onConnection)
      server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
        const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? ''}`
        socket.destroy()
        onRefused(remote, `TLS handshake refused: ${refusalReason(err, presented.get(socket), cred.identity)}`)
      })
      return server
    }
  }
}

/** Why the repository refused a handshake, in words (the OpenSSL code in brackets). */
function refusalReason (err: Error & { code?: string }, identity: string | undefined, expected: string): string {
  const code = err.code ?? err.message
  if (identity !== undefined && identity !== expected) return `the client presented identity '${identity.slice(0, 64)}', this repository is '${expected}' [${code}]`
  if (identity !== undefined && code === 'ERR_SSL_BINDER_DOES_NOT_VERIFY') return `the client presented identity '${identity}' with a wrong key [${code}]`
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_HTTP_REQUEST') return `not a TLS client (clear text is not accepted) [${code}]`
  if (/timed? ?out/i.test(err.message)) return `the client did not finish the handshake within ${HANDSHAKE_TIMEOUT_MS} ms [${code}]`
  return `the client presented no pre-shared key this repository accepts [${code}]`
}

export const clearConnector: RepositoryConnector = async (address, timeoutMs) => {
  const socket = netConnect(address.port, address.host)
  socket.setNoDelay(true)
  await established(socket, 'connect', address, timeoutMs, e => `cannot reach repository ${formatAddress(address)}: ${e.message}`)
  return socket
}

/**
 * A TLS-PSK client: `credentials(address)` names the repository's credential (undefined: none
 * known, and the connection is not attempted: no clear text instead).
 */
export function pskConnector (credentials: (address: RepositoryAddress) => RepositoryTls | undefined): RepositoryConnector {
  return async (address, timeoutMs) => {
    const tls = credentials(address)
    if (tls === undefined) throw new RepositoryError('tls', `no TLS credentials for repository ${formatAddress(address)} on this host (clear text is not offered)`)
    const cred = checkRepositoryTls(tls)
    const socket = tlsConnect({
      host: address.host,
      port: address.port,
      minVersion: TLS_VERSION,
      pskCallback: () => ({ identity: cred.identity, psk: Buffer.from(cred.key, 'hex') }),
      // Only the pre-shared key authenticates a repository: a certificate, however well signed, does not.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => cert !== undefined && Object.keys(cert).length > 0 ? new Error('the peer presented a certificate instead of the repository\'s pre-shared key') : undefined
    })
    socket.setNoDelay(true)
    await established(socket, 'secureConnect', address, timeoutMs, e => tlsFailure(e, address, cred.identity))
    return socket
  }
}

function tlsFailure (e: Error & { code?: string }, address: RepositoryAddress, identity: string): RepositoryError {
  const code = e.code ?? ''
  const at = `repository ${formatAddress(address)}`
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || /timed out/.test(e.message)) return new RepositoryError('connection', `cannot reach ${at}: ${e.message}`, e)
  if (code.startsWith('ERR_SSL_SSLV3_ALERT') || code.startsWith('ERR_SSL_TLSV1_ALERT')) return new RepositoryError('tls', `${at} refused the TLS handshake for identity '${identity}' (wrong key, or another repository there now) [${code}]`, e)
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER') return new RepositoryError('tls', `${at} does not speak TLS (a clear-text peer is not used) [${code}]`, e)
  const why = code !== '' ? `[${code}]` : e.message
  return new RepositoryError('tls', `TLS handshake with ${at} failed ${why} (a peer without the repository's key, or no TLS repository)`, e)
}

/** Waits for `event` on a fresh socket; destroys it and rejects with `fail(error)` otherwise. */
async function established (socket: Socket, event: string, address: RepositoryAddress, timeoutMs: number, fail: (e: Error & { code?: string }) => string | RepositoryError): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs)
      socket.once(event, () => { clearTimeout(timer); resolve() })
      socket.once('error', e => { clearTimeout(timer); reject(e) })
      socket.once('close', () => { clearTimeout(timer); reject(new Error(`repository ${formatAddress(address)} closed the connection during the handshake`)) })
    })
  } catch (e) {
    socket.destroy()
    const f = fail(e as Error)
    throw typeof f === 'string' ? new RepositoryError('connection', f, e) : f
  }
  socket.on('error', () => {})
}
