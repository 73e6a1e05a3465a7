/** Typed errors of the Xen backend (codes shared with the QEMU backend where the meaning is the same). */
import { SupercloudError } from '../../core/errors.ts'

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

/**
 * A live migration between Xen hosts failed (the code QEMU's migration uses). `side` says
 * which end reports it; `guestRunningHere` (source) says whether the guest still runs on this
 * host afterwards (false only when xl's final handshake failed: check both ends), and `log`
 * holds the tail of xl's own log.
 */
export class XenMigrationError extends SupercloudError {
  readonly guest: string
  readonly side: 'send' | 'receive'
  readonly reason: string
  readonly log: string
  readonly guestRunningHere?: boolean
  constructor (p: { guest: string, side: 'send' | 'receive', reason: string, detail: string, log?: string, guestRunningHere?: boolean, cause?: unknown }) {
    const log = (p.log ?? '').trim()
    const where = p.guestRunningHere === undefined ? '' : p.guestRunningHere ? '; the guest still runs on the source' : '; the guest does NOT run on the source'
    super('SC_MIGRATION_FAILED', `migration of guest ${p.guest} failed (${p.side === 'send' ? 'sending' : 'receiving'}: ${p.reason}): ${p.detail}${where}${log !== '' ? `\n--- xl ---\n${log}` : ''}`, { cause: p.cause })
    this.guest = p.guest
    this.side = p.side
    this.reason = p.reason
    this.log = log
    if (p.guestRunningHere !== undefined) this.guestRunningHere = p.guestRunningHere
  }
}
