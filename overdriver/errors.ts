/** Typed errors of the Overdriver data plane (codes listed in docs/overdriver.md). */
import { SupercloudError } from '../core/errors.ts'

/** A peer broke the NBD protocol; the connection was closed (the reason says how). */
export class NbdProtocolError extends SupercloudError {
  constructor (reason: string) {
    super('SC_NBD_PROTOCOL', reason)
  }
}

/** An NBD request failed; `errno` is the NBD error the server answered with (EIO = 5, EINVAL = 22, ...). */
export class NbdRequestError extends SupercloudError {
  readonly errno: number
  constructor (what: string, errno: number) {
    super('SC_NBD_REQUEST', `${what} failed with NBD error ${errno}`)
    this.errno = errno
  }
}

/**
 * A page repository refused a request or broke its protocol. `status` is the repository's
 * answer: 'no-room' (capacity reached), 'bad-capability', 'not-found', 'bad-request', 'denied',
 * 'connection' when the repository could not be reached or went away, or 'tls' when the TLS
 * handshake failed (wrong or missing pre-shared key, or no TLS repository at that address).
 */
export class RepositoryError extends SupercloudError {
  readonly status: string
  constructor (status: string, message: string, cause?: unknown) {
    super(status === 'no-room' ? 'SC_REPOSITORY_FULL' : status === 'connection' ? 'SC_REPOSITORY_UNREACHABLE' : status === 'tls' ? 'SC_REPOSITORY_TLS' : 'SC_REPOSITORY', message, { cause })
    this.status = status
  }
}

/** The sector table file could not be read (corrupt, or written by an incompatible version). */
export class SectorTableError extends SupercloudError {
  constructor (message: string, cause?: unknown) {
    super('SC_SECTOR_TABLE', message, { cause })
  }
}
