/** Typed errors of the Xen backend (codes shared with the QEMU backend where the meaning is the same). */
import { SupercloudError } from '../../blanket-manager/errors.ts'

/** `xl` cannot be run, or does not reach a Xen hypervisor (not a dom0). */
export class XenMissingError extends SupercloudError {
  constructor (where: string, detail: string, cause?: unknown) {
    super('SC_HYPERVISOR_MISSING', `Xen is not usable on this host (${where}): ${detail}; the host must run Xen with this machine as dom0 and have xen-utils installed`, { cause })
  }
}

/** Xen runs, but cannot run PVH guests (no HVM or no HAP). */
export class XenNoPvhError extends SupercloudError {
  constructor (detail: string) {
    super('SC_XEN_NO_PVH', `this Xen host cannot run PVH guests: ${detail}`)
  }
}

/** `xl create` failed, or a file the guest needs is missing. */
export class XenGuestStartError extends SupercloudError {
  readonly stderr: string
  constructor (guest: string, detail: string, stderr = '', cause?: unknown) {
    const tail = stderr.trim()
    super('SC_GUEST_START', `guest ${guest} could not start: ${detail}${tail !== '' ? `\n--- xl ---\n${tail}` : ''}`, { cause })
    this.stderr = stderr
  }
}

/** The operation needs a running domain and there is none with that name. */
export class XenGuestNotRunningError extends SupercloudError {
  constructor (guest: string) {
    super('SC_GUEST_NOT_RUNNING', `guest ${guest} is not running (no Xen domain with that name)`)
  }
}

/** An xl command failed unexpectedly. */
export class XlCommandError extends SupercloudError {
  constructor (command: string, code: number | null, stderr: string) {
    super('SC_XEN_XL', `\`${command}\` exited ${code ?? 'by signal'}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`)
  }
}
