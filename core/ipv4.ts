/**
 * IPv4 address and CIDR helpers (pure). Addresses are handled as unsigned 32-bit integers.
 * Strict dotted-decimal: four parts 0-255, no leading zeros (which some tools read as octal).
 */

export interface Cidr {
  /** The address as written (may have host bits set, e.g. 198.18.1.101/24 for a NIC). */
  address: number
  prefix: number
}

/** Unsigned 32-bit value of a dotted-quad address, or undefined when it is not one. */
export function parseIpv4 (text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let value = 0
  for (const part of parts) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    value = value * 256 + n
  }
  return value
}

export function formatIpv4 (value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.')
}

/** `a.b.c.d/n` → address and prefix, or undefined. */
export function parseCidr (text: string): Cidr | undefined {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text)
  if (m === null) return undefined
  const address = parseIpv4(m[1] ?? '')
  const prefix = Number(m[2])
  if (address === undefined || prefix > 32 || !/^(0|[1-9]\d?)$/.test(m[2] ?? '')) return undefined
  return { address, prefix }
}

export function maskOf (prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
}

/** Network address of a CIDR (host bits cleared). */
export function networkOf (c: Cidr): number {
  return (c.address & maskOf(c.prefix)) >>> 0
}

/** Broadcast (last) address of a CIDR. */
export function broadcastOf (c: Cidr): number {
  return (networkOf(c) | (~maskOf(c.prefix) >>> 0)) >>> 0
}

export function formatCidr (c: Cidr): string {
  return `${formatIpv4(c.address)}/${c.prefix}`
}

/** True when the address lies inside the CIDR's network. */
export function cidrContains (c: Cidr, address: number): boolean {
  return ((address & maskOf(c.prefix)) >>> 0) === networkOf(c)
}

/** True when two networks share at least one address. */
export function cidrsOverlap (a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix)
  const m = maskOf(p)
  return ((a.address & m) >>> 0) === ((b.address & m) >>> 0)
}

/** First usable address of a network (network + 1): the default site gateway. */
export function firstHostOf (c: Cidr): number {
  return networkOf(c) + 1
}

/** Number of addresses in the CIDR's network (2^(32 - prefix)). */
export function sizeOf (c: Cidr): number {
  return 2 ** (32 - c.prefix)
}

/**
 * True when `address` may be given to a host inside the CIDR's network: inside it, and not its
 * network or broadcast address (a /31 or /32 has neither, so all of its addresses are usable).
 */
export function isUsableHost (c: Cidr, address: number): boolean {
  if (!cidrContains(c, address)) return false
  if (c.prefix >= 31) return true
  return address !== networkOf(c) && address !== broadcastOf(c)
}
