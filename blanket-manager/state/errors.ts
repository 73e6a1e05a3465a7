/** The state stores' typed errors (codes in core/error-codes.ts, documented in docs/errors.md). */
import { SupercloudError } from '../../core/errors.ts'

/** A state URL (`state:` in the spec, SUPERCLOUD_STATE) that cannot be used. */
export class StateUrlError extends SupercloudError {
  constructor (url: string, detail: string) {
    super('SC_STATE_URL', `state URL ${url} is not valid: ${detail} (expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or ?host=/socket/dir for a unix socket)`, { exitCode: 2 })
  }
}

/** The PostgreSQL server refused the state URL's user or password. */
export class StateAuthError extends SupercloudError {
  constructor (where: string, detail: string) {
    super('SC_STATE_AUTH', `PostgreSQL at ${where} refused the login: ${detail}; check the user and password in the state URL`)
  }
}

/** The PostgreSQL server of the state URL cannot be reached (refused, no such socket, timeout, no such database). */
export class StateUnreachableError extends SupercloudError {
  constructor (where: string, detail: string) {
    super('SC_STATE_UNREACHABLE', `cannot reach the state at ${where}: ${detail}`)
  }
}

/** The store holds a schema of a version this supercloud does not know (written by a newer one): nothing is changed. */
export class StateSchemaError extends SupercloudError {
  constructor (where: string, found: number, known: number) {
    super('SC_STATE_SCHEMA', `the state at ${where} has schema version ${found}, newer than this supercloud's ${known}; upgrade supercloud (nothing was changed)`)
  }
}

/** A write by a process that lost its lock (another took it since): refused, so it cannot overwrite the new holder's changes. */
export class StateFencedError extends SupercloudError {
  constructor (where: string, lock: string) {
    super('SC_STATE_FENCED', `this process lost the ${lock} lock of the state at ${where} (its database session ended and another process took the lock); its write was refused: run the command again`)
  }
}

/** `state push` to a store that already holds a supercloud of that name. */
export class StateExistsError extends SupercloudError {
  constructor (name: string, where: string) {
    super('SC_STATE_EXISTS', `${where} already holds a supercloud named ${name}; nothing was copied`)
  }
}
