/** IPv4 address arithmetic (pure). */
import { LocalDriverError } from '../../blanket-manager/errors.ts'

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  network: number
  prefixLen: number
}

export function parseIp (s: string): number {
  const parts = s.split('.')
  if (parts.length !== 4) throw new LocalDriverError(`not an IPv4 address: '${s}'`)
  let n = 0
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new LocalDriverError(`not an IPv4 address: '${s}'`)
    n = n * 256 + Number(p)
  }
  return n
}

export function formatIp (n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

function maskOf (prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0
}

/** Parses "a.b.c.d/len"; the address is reduced to its network. */
export function parseCidr (s: string): Cidr {
  const [addr, len] = s.split('/')
  const prefixLen = Number(len)
  if (addr === undefined || len === undefined || !/^\d{1,2}$/.test(len) || prefixLen > 32) throw new LocalDriverError(`not an IPv4 CIDR: '${s}'`)
  return { network: (parseIp(addr) & maskOf(prefixLen)) >>> 0, prefixLen }
}

export function formatCidr (c: Cidr): string {
  return `${formatIp(c.network)}/${c.prefixLen}`
}

export function size (c: Cidr): number {
  return 2 ** (32 - c.prefixLen)
}

export function contains (c: Cidr, ip: number): boolean {
  return ((ip & maskOf(c.prefixLen)) >>> 0) === c.network
}

export function overlaps (a: Cidr, b: Cidr): boolean {
  const len = Math.min(a.prefixLen, b.prefixLen)
  const m = maskOf(len)
  return ((a.network & m) >>> 0) === ((b.network & m) >>> 0)
}

/** Usable host addresses (network and broadcast excluded, except /31 and /32). */
export function isUsableHost (c: Cidr, ip: number): boolean {
  if (!contains(c, ip)) return false
  if (c.prefixLen >= 31) return true
  return ip !== c.network && ip !== c.network + size(c) - 1
}

export function firstHost (c: Cidr): number {
  return c.prefixLen >= 31 ? c.network : c.network + 1
}
