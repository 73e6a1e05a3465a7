/**
 * The endpoint interface of seed 002 (Figure 5.9), pure part: what a write to `create`,
 * `<N>` or `destroy` means, which errno a bad write gets, and what `cat <N>` shows.
 *
 *   echo "<N> <AdrA> <AdrB>" > <root>/create    create endpoint N (receive on AdrA, send to AdrB)
 *   cat <root>/<N>                              one line: the endpoint's configuration
 *   echo "<AdrC>" > <root>/<N>                   re-point the send side
 *   echo "<N>" > <root>/destroy                 remove endpoint N
 *
 * Addresses are `ipv4[:port]` (port defaults to 4789). No I/O here.
 */
import { SupercloudError } from '../../core/errors.ts'
import {
  DEFAULT_VW_PORT, MAX_CONNECTOR_ID, MIN_CONNECTOR_ID,
  endpointBridgeName, endpointVxlanName,
  type EndpointAddress, type EndpointConfig
} from '../types.ts'

/** Files of the interface besides one file per endpoint. */
export const CREATE_FILE = 'create'
export const DESTROY_FILE = 'destroy'
export const LAST_ERROR_FILE = 'last_error'
export const CONTROL_FILES = [CREATE_FILE, DESTROY_FILE, LAST_ERROR_FILE] as const

/**
 * errno a failed write returns to the writer (the shell prints its strerror):
 * EINVAL malformed line, bad address, port mismatch; EEXIST duplicate N; ENOENT unknown N;
 * ERANGE N outside 1..16777215; EACCES writing a read-only file; EIO the kernel refused
 * a change (reason carries `ip`'s message).
 */
export type EndpointErrno = 'EINVAL' | 'EEXIST' | 'ENOENT' | 'ERANGE' | 'EACCES' | 'EIO'

/** A write the endpoint interface refused: errno for the writer, reason for `last_error`. */
export class EndpointWriteError extends SupercloudError {
  readonly errno: EndpointErrno
  readonly reason: string
  constructor (errno: EndpointErrno, reason: string, cause?: unknown) {
    super('SC_VW_ENDPOINT', `${errno}: ${reason}`, { cause })
    this.errno = errno
    this.reason = reason
  }
}

export type EndpointCommand =
  | { kind: 'create', config: EndpointConfig }
  | { kind: 'repoint', id: number, remote: EndpointAddress }
  | { kind: 'destroy', id: number }

/** Whether both ends of the connector are on this host (AdrB = AdrA). */
export function isCollapsed (c: EndpointConfig): boolean {
  return sameAddress(c.local, c.remote)
}

export function sameAddress (a: EndpointAddress, b: EndpointAddress): boolean {
  return a.ip === b.ip && a.port === b.port
}

export function formatAddress (a: EndpointAddress): string {
  return `${a.ip}:${a.port}`
}

/**
 * The line `cat <root>/<N>` shows (without newline), e.g.
 * `7 198.18.1.10:4789 198.18.2.10:4789 encap bridge=sc12b7 dev=sc12x7` or
 * `9 198.18.1.10:4789 198.18.1.10:4789 collapsed bridge=sc12b9`.
 */
export function formatEndpoint (c: EndpointConfig, prefix: string): string {
  const head = `${c.id} ${formatAddress(c.local)} ${formatAddress(c.remote)}`
  const bridge = endpointBridgeName(prefix, c.id)
  return isCollapsed(c)
    ? `${head} collapsed bridge=${bridge}`
    : `${head} encap bridge=${bridge} dev=${endpointVxlanName(prefix, c.id)}`
}

/** File name of endpoint N in the interface root (decimal, like the IDs written). */
export function endpointFileName (id: number): string {
  return String(id)
}

/** Endpoint ID of a file name in the root, undefined for anything that is not one. */
export function endpointIdOfFile (name: string): number | undefined {
  if (!/^[1-9][0-9]{0,7}$/.test(name)) return undefined
  const id = Number(name)
  return id >= MIN_CONNECTOR_ID && id <= MAX_CONNECTOR_ID ? id : undefined
}

/** Parses a connector ID: decimal, 1..16777215 (ERANGE outside, EINVAL when not a number). */
export function parseConnectorId (s: string): number | EndpointWriteError {
  if (!/^[+-]?[0-9]+$/.test(s)) return new EndpointWriteError('EINVAL', `connector ID '${s}' is not a decimal number`)
  const n = Number(s)
  if (!Number.isSafeInteger(n) || n < MIN_CONNECTOR_ID || n > MAX_CONNECTOR_ID) {
    return new EndpointWriteError('ERANGE', `connector ID ${s} is outside ${MIN_CONNECTOR_ID}..${MAX_CONNECTOR_ID} (a VXLAN VNI)`)
  }
  return n
}

/** Parses `ipv4[:port]`; the address must be unicast (not 0/8, multicast or broadcast). */
export function parseAddress (s: string): EndpointAddress | EndpointWriteError {
  const m = /^([0-9.]+)(?::([0-9]+))?$/.exec(s)
  if (m === null) return new EndpointWriteError('EINVAL', `'${s}' is not an address of the form ipv4[:port]`)
  const ip = m[1] ?? ''
  const parts = ip.split('.')
  if (parts.length !== 4 || parts.some(p => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255)) {
    return new EndpointWriteError('EINVAL', `'${ip}' is not a dotted-quad IPv4 address`)
  }
  const first = Number(parts[0])
  if (first === 0 || first >= 224) {
    return new EndpointWriteError('EINVAL', `${ip} is not a unicast address (0.0.0.0/8, multicast and broadcast cannot be endpoint addresses)`)
  }
  let port = DEFAULT_VW_PORT
  if (m[2] !== undefined) {
    port = Number(m[2])
    if (!/^[1-9][0-9]{0,4}$/.test(m[2]) || port > 65535) return new EndpointWriteError('EINVAL', `port '${m[2]}' in '${s}' is not 1..65535`)
  }
  return { ip, port }
}

function fields (line: string): string[] {
  return line.trim().split(/[ \t]+/).filter(f => f !== '')
}

function portMismatch (local: EndpointAddress, remote: EndpointAddress): EndpointWriteError | undefined {
  if (local.port === remote.port) return undefined
  return new EndpointWriteError('EINVAL', `AdrA port ${local.port} and AdrB port ${remote.port} differ: kernel VXLAN receives and sends on one UDP port, so both ends must use the same port`)
}

/** `<N> <AdrA> <AdrB>` written to `create`. */
export function parseCreate (line: string): EndpointCommand | EndpointWriteError {
  const f = fields(line)
  if (f.length !== 3) return new EndpointWriteError('EINVAL', `create expects "<N> <AdrA> <AdrB>", got ${f.length} field${f.length === 1 ? '' : 's'}: '${line.trim()}'`)
  const id = parseConnectorId(f[0] ?? '')
  if (id instanceof EndpointWriteError) return id
  const local = parseAddress(f[1] ?? '')
  if (local instanceof EndpointWriteError) return local
  const remote = parseAddress(f[2] ?? '')
  if (remote instanceof EndpointWriteError) return remote
  return portMismatch(local, remote) ?? { kind: 'create', config: { id, local, remote } }
}

/** `<AdrC>` written to `<N>`. */
export function parseRepoint (id: number, line: string): EndpointCommand | EndpointWriteError {
  const f = fields(line)
  if (f.length !== 1) return new EndpointWriteError('EINVAL', `writing to endpoint ${id} expects one address "<AdrC>", got ${f.length} fields: '${line.trim()}'`)
  const remote = parseAddress(f[0] ?? '')
  if (remote instanceof EndpointWriteError) return remote
  return { kind: 'repoint', id, remote }
}

/** `<N>` written to `destroy`. */
export function parseDestroy (line: string): EndpointCommand | EndpointWriteError {
  const f = fields(line)
  if (f.length !== 1) return new EndpointWriteError('EINVAL', `destroy expects "<N>", got ${f.length} fields: '${line.trim()}'`)
  const id = parseConnectorId(f[0] ?? '')
  if (id instanceof EndpointWriteError) return id
  return { kind: 'destroy', id }
}

/** One line written to `file` (a name in the root) → a command, or why it is refused. */
export function parseWrite (file: string, line: string): EndpointCommand | EndpointWriteError {
  if (file === CREATE_FILE) return parseCreate(line)
  if (file === DESTROY_FILE) return parseDestroy(line)
  if (file === LAST_ERROR_FILE) return new EndpointWriteError('EACCES', `${LAST_ERROR_FILE} is read-only`)
  const id = endpointIdOfFile(file)
  if (id === undefined) return new EndpointWriteError('ENOENT', `no file '${file}' in the endpoint interface (create, destroy, last_error, <N>)`)
  return parseRepoint(id, line)
}

/**
 * Checks a parsed command against the endpoints that exist: EEXIST for a duplicate create,
 * ENOENT for re-pointing or destroying an unknown endpoint, EINVAL when AdrC's port differs
 * from the endpoint's AdrA port.
 */
export function checkCommand (cmd: EndpointCommand, current: ReadonlyMap<number, EndpointConfig>): EndpointWriteError | undefined {
  switch (cmd.kind) {
    case 'create': {
      const had = current.get(cmd.config.id)
      return had === undefined ? undefined : new EndpointWriteError('EEXIST', `endpoint ${cmd.config.id} already exists (${formatAddress(had.local)} → ${formatAddress(had.remote)}); destroy it first or re-point it`)
    }
    case 'repoint': {
      const had = current.get(cmd.id)
      if (had === undefined) return new EndpointWriteError('ENOENT', `endpoint ${cmd.id} does not exist`)
      return portMismatch(had.local, cmd.remote)
    }
    case 'destroy':
      return current.has(cmd.id) ? undefined : new EndpointWriteError('ENOENT', `endpoint ${cmd.id} does not exist`)
  }
}

/** The configuration after `cmd` (assumed checked). */
export function applyCommand (cmd: EndpointCommand, current: ReadonlyMap<number, EndpointConfig>): Map<number, EndpointConfig> {
  const next = new Map(current)
  switch (cmd.kind) {
    case 'create': next.set(cmd.config.id, cmd.config); break
    case 'repoint': {
      const had = current.get(cmd.id)
      if (had !== undefined) next.set(cmd.id, { ...had, remote: cmd.remote })
      break
    }
    case 'destroy': next.delete(cmd.id); break
  }
  return next
}

/** Text of `last_error` after a refused write (one line, with the command that failed). */
export function formatLastError (file: string, line: string, err: EndpointWriteError): string {
  return `${err.errno} ${file} "${line.trim()}": ${err.reason}`
}

/**
 * Line buffering of one open file handle: `push` returns the complete lines written so far,
 * `rest` what is left without a newline (applied when the handle is flushed or closed).
 */
export class LineBuffer {
  private pending = ''
  push (chunk: string): string[] {
    this.pending += chunk
    const lines = this.pending.split('\n')
    this.pending = lines.pop() ?? ''
    return lines.map(l => l.replace(/\r$/, ''))
  }

  /** Takes the unterminated remainder (empty string when none). */
  takeRest (): string {
    const r = this.pending
    this.pending = ''
    return r
  }
}
