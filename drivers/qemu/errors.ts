/** Typed errors of the QEMU backend (all extend SupercloudError; codes are stable). */
import { QmpError, SupercloudError } from '../../core/errors.ts'

/** The hypervisor binary is not installed (or not executable) on this host. */
export class HypervisorMissingError extends SupercloudError {
  readonly binary: string
  constructor (binary: string, detail: string, cause?: unknown) {
    super('SC_HYPERVISOR_MISSING', `QEMU is not installed on this host: cannot run ${binary} (${detail}); install the qemu-system-x86 package`, { cause })
    this.binary = binary
  }
}

/** A GuestDefinition cannot be turned into a QEMU command line (bad name, id, size). */
export class GuestDefinitionError extends SupercloudError {
  constructor (guest: string, detail: string) {
    super('SC_GUEST_DEFINITION', `guest ${guest}: ${detail}`, { exitCode: 2 })
  }
}

/** QEMU could not start the guest (missing kernel/disk, bad arguments, QEMU exited at start). */
export class GuestStartError extends SupercloudError {
  /** Last lines QEMU wrote to stderr, when it ran at all. */
  readonly stderr: string
  constructor (guest: string, detail: string, stderr = '', cause?: unknown) {
    const tail = stderr.trim()
    super('SC_GUEST_START', `guest ${guest} could not start: ${detail}${tail !== '' ? `\n--- qemu stderr ---\n${tail}` : ''}`, { cause })
    this.stderr = stderr
  }
}

/** QEMU answered a QMP command with an error; carries QEMU's error class and description. */
export class QmpCommandError extends QmpError {
  readonly command: string
  /** QEMU's error class, e.g. "GenericError", "CommandNotFound", "DeviceNotActive". */
  readonly errorClass: string
  readonly desc: string
  constructor (command: string, errorClass: string, desc: string) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`)
    this.command = command
    this.errorClass = errorClass
    this.desc = desc
  }
}

/** An operation needs a running guest but no live QEMU process exists for it. */
export class GuestNotRunningError extends SupercloudError {
  constructor (guest: string, runDir: string) {
    super('SC_GUEST_NOT_RUNNING', `guest ${guest} is not running (no live QEMU for ${runDir})`)
  }
}
