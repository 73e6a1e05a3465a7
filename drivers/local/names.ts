/**
 * Kernel object names of the local driver (pure). Linux interface names and our
 * namespace names fit 15 characters (IFNAMSIZ - 1); names that would be longer are
 * shortened to their first 10 characters, '_' and a 4-character hash of the full name.
 * Spec names are [a-z0-9-], so a shortened name never equals a natural one.
 */
import { createHash } from 'node:crypto'
import { LocalDriverError } from '../../core/errors.ts'

export const MAX_NAME = 15
/** Interface names used inside our own namespaces (never in the root namespace). */
export const HOST_BRIDGE = 'br0'
export const HOST_UPLINK = 'eth0'
export const SITE_BRIDGE = 'br0'
export const SITE_UPLINK = 'wan0'
export const DELAY_TUN = 'dly0'

export function shortHash (s: string, len = 4): string {
  const n = createHash('sha256').update(s).digest().readUInt32BE(0)
  return n.toString(36).padStart(len, '0').slice(-len)
}

/** `full` when it fits `max`, else its first max-5 characters + '_' + hash. */
export function fitName (full: string, max = MAX_NAME): string {
  if (full.length <= max) return full
  return `${full.slice(0, max - 5)}_${shortHash(full)}`
}

/** Validates a supercloud prefix: 1-8 of [a-z0-9], starting with a letter. */
export function checkPrefix (prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix)) {
    throw new LocalDriverError(`prefix '${prefix}' must be 1-8 characters of [a-z0-9] starting with a letter`)
  }
}

export function wanNs (prefix: string): string {
  checkPrefix(prefix)
  return `${prefix}-wan`
}

export function siteNs (prefix: string, site: string): string {
  checkPrefix(prefix)
  return fitName(`${prefix}-s-${site}`)
}

export function hostNs (prefix: string, host: string): string {
  checkPrefix(prefix)
  return fitName(`${prefix}-h-${host}`)
}

/** WAN-namespace end of the veth pair towards a site. */
export function wanSideLink (site: string): string {
  return fitName(`s-${site}`)
}

/** Site-namespace end of the veth pair towards a host (the host end is eth0). */
export function siteSideLink (host: string): string {
  return fitName(`h-${host}`)
}
