/**
 * Typed errors with stable codes. Every failure a user can meet has one class here
 * (or in the module that owns it, extending SupercloudError) and a line in docs/errors.md.
 */
import { isErrorCode, type ErrorCode } from './error-codes.ts'
export { ERROR_CODES, isErrorCode, type ErrorCode } from './error-codes.ts'

export class SupercloudError extends Error {
  /** Stable machine-readable code, e.g. SC_SPEC_INVALID (core/error-codes.ts). Never reworded. */
  readonly code: ErrorCode
  /** Process exit code used by the CLI when this error ends a command. */
  readonly exitCode: number
  constructor (code: ErrorCode, message: string, options?: { cause?: unknown, exitCode?: number }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = new.target.name
    this.code = code
    this.exitCode = options?.exitCode ?? 1
  }
}

/** One problem found in a spec, located in its file. */
export interface SpecIssue {
  file: string
  line: number
  column: number
  /** Dotted path of the field, e.g. "vms.web1.memory". */
  field: string
  message: string
}

/** Thrown when supercloud.yaml cannot be parsed or fails validation. */
export class SpecError extends SupercloudError {
  readonly issues: SpecIssue[]
  constructor (issues: SpecIssue[]) {
    super('SC_SPEC_INVALID', issues.map(i => `${i.file}:${i.line}:${i.column}: ${i.field}: ${i.message}`).join('\n'), { exitCode: 2 })
    this.issues = issues
  }
}

/** A host could not be reached over SSH (connection refused, timeout, no route). */
export class HostUnreachableError extends SupercloudError {
  constructor (host: string, detail: string, cause?: unknown) {
    super('SC_HOST_UNREACHABLE', `host ${host} is unreachable over SSH: ${detail}`, { cause })
  }
}

/** SSH authentication failed (wrong or missing key). */
export class HostAuthError extends SupercloudError {
  constructor (host: string, detail: string, cause?: unknown) {
    super('SC_HOST_AUTH', `host ${host} refused our SSH key: ${detail}`, { cause })
  }
}

/**
 * A host presented an SSH host key other than the one pinned for it (at first contact, by the
 * spec's `ssh.hostKey` or by its cloud). Someone may be posing as the host: nothing is done.
 */
export class HostKeyMismatchError extends SupercloudError {
  constructor (readonly host: string, readonly expected: string, readonly seen: string, source: string, remedy: string) {
    super('SC_HOST_KEY_MISMATCH', `host ${host} presented SSH host key ${seen}, but ${expected} is pinned for it (${source}); stopping before anything is sent to it. ` +
      `If the host really got a new key (reinstalled, key rotated), check the new fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and then ${remedy}`, { exitCode: 2 })
  }
}

/** The last `lines` lines of a command's output on one line, for an error message. */
export function outputTail (output: string, lines = 5): string {
  return output.trim().split('\n').slice(-lines).join(' | ')
}

/**
 * A command (on a host, or here: core/exec.ts) failed: it exited with a status the caller
 * did not accept, ran out of time, or could not be started at all. Carries its exit status
 * and its output (stderr, else stdout), whose tail the message shows.
 */
export class RemoteCommandError extends SupercloudError {
  readonly host: string
  readonly command: string
  /** Exit status; null when there is none (killed, timed out, never started). */
  readonly status: number | null
  /** The output shown: stderr, else stdout (the time limit or why a status is missing first). */
  readonly stderr: string
  readonly reason: 'status' | 'timeout' | 'start'
  constructor (host: string, command: string, status: number | null, stderr: string, more: { reason?: 'status' | 'timeout' | 'start', cause?: unknown } = {}) {
    const reason = more.reason ?? 'status'
    super('SC_REMOTE_COMMAND', `on ${host}: \`${command}\` ${reason === 'start' ? 'could not be started' : `exited ${status ?? 'by signal'}`}: ${outputTail(stderr)}`, { cause: more.cause })
    this.host = host
    this.command = command
    this.status = status
    this.stderr = stderr
    this.reason = reason
  }
}

/** The Blanket bootstrap found something missing that it could not install. */
export class BootstrapError extends SupercloudError {
  constructor (host: string, detail: string, cause?: unknown) {
    super('SC_BOOTSTRAP', `bootstrap of host ${host} failed: ${detail}`, { cause })
  }
}

/** A VM does not fit on the host it was placed on (memory or vCPUs). */
export class CapacityError extends SupercloudError {
  constructor (message: string) {
    super('SC_CAPACITY', message, { exitCode: 2 })
  }
}

/** A guest did not reach its ready marker in time; message carries its console tail. */
export class GuestBootError extends SupercloudError {
  readonly consoleTail: string
  constructor (vm: string, detail: string, consoleTail: string) {
    const tail = consoleTail.trim() === ''
      ? '(the console stayed empty: the guest did not get as far as starting its kernel console; too little memory for its kernel and initrd is a common cause)'
      : consoleTail
    super('SC_GUEST_BOOT', `guest ${vm} failed to boot: ${detail}\n--- last console lines ---\n${tail}`)
    this.consoleTail = consoleTail
  }
}

/** A QMP command failed or timed out. */
export class QmpError extends SupercloudError {
  constructor (detail: string, cause?: unknown) {
    super('SC_QMP', detail, { cause })
  }
}

/**
 * The host agent answered with an error or could not be reached. A code the agent sent that is not
 * one of ours (an agent of another version) becomes SC_AGENT_INTERNAL, the code kept in the message.
 */
export class AgentError extends SupercloudError {
  constructor (code: string, message: string) {
    super(isErrorCode(code) ? code : 'SC_AGENT_INTERNAL', isErrorCode(code) ? message : `${message} (agent code ${code})`)
  }
}

/** The local driver could not create or remove a namespace, link or process. */
export class LocalDriverError extends SupercloudError {
  constructor (detail: string, cause?: unknown) {
    super('SC_LOCAL_DRIVER', detail, { cause })
  }
}

/** Another supercloud command holds the state lock. */
export class StateLockedError extends SupercloudError {
  constructor (path: string, readonly pid: number, readonly holder?: { who?: string, since?: string, purpose?: string }) {
    super('SC_STATE_LOCKED', `state ${path} is locked by running process ${pid}${holderText(holder)}; wait for it or stop it`)
  }
}

/** " (alice@laptop-7 since 12:03:11, up)" for a lock holder the store knows more of. */
function holderText (h: { who?: string, since?: string, purpose?: string } | undefined): string {
  if (h?.who === undefined) return ''
  const since = h.since !== undefined ? ` since ${h.since.replace(/^.*T(\d\d:\d\d:\d\d).*$/, '$1')}` : ''
  return ` (${h.who}${since}${h.purpose !== undefined ? `, ${h.purpose}` : ''})`
}

/** Another running process moves this VM (`migrate`, or `serve`'s Overdriver loop): its move lock is held. */
export class VmMovingError extends SupercloudError {
  constructor (readonly vm: string, readonly pid: number, readonly holder?: { who?: string, since?: string, purpose?: string }) {
    super('SC_VM_MOVING', `vm ${vm} is being moved by running process ${pid}${holderText(holder)} (a supercloud migrate, or serve's Overdriver); wait for the move to end, or cancel it: supercloud migrate ${vm} --cancel`)
  }
}

/** Operation cancelled through its AbortSignal (Ctrl-C). */
export class CancelledError extends SupercloudError {
  constructor (what: string) {
    super('SC_CANCELLED', `${what} cancelled`, { exitCode: 130 })
  }
}

/** Named object does not exist in the spec or state. */
export class NotFoundError extends SupercloudError {
  constructor (kind: string, name: string) {
    super('SC_NOT_FOUND', `no ${kind} named '${name}'`, { exitCode: 2 })
  }
}

export function throwIfAborted (signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) throw new CancelledError(what)
}

/** A host cannot run Xen as its hypervisor (cloud VM without nested virtualization, no GRUB, ...); the message says why. */
export class XenUnsupportedError extends SupercloudError {
  constructor (host: string, reason: string) {
    super('SC_XEN_UNSUPPORTED', reason.startsWith(`host ${host}`) ? reason : `host ${host}: ${reason}`, { exitCode: 2 })
  }
}

/** The trial boot into Xen did not work out; the host runs (or is rebooting into) its previous kernel, Xen is not its default. */
export class XenBootFallbackError extends SupercloudError {
  /** The GRUB entry the host boots by default (unchanged). */
  readonly fallbackEntry: string
  constructor (host: string, detail: string, fallbackEntry: string, cause?: unknown) {
    super('SC_XEN_BOOT_FALLBACK', `host ${host} did not stay under Xen: ${detail}; its default boot entry is still '${fallbackEntry}' and Xen was not made permanent`, { cause })
    this.fallbackEntry = fallbackEntry
  }
}
