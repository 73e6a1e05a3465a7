/**
 * Units used in supercloud.yaml and on the command line: sizes (bytes), durations
 * (milliseconds) and bandwidths (bits per second). Parsers accept what a person writes;
 * formatters produce the shortest exact text that parses back to the same value.
 *
 * - Sizes are binary: K = KiB = 1024, M = MiB, G = GiB, T = TiB. The suffixes `K`, `Ki`,
 *   `KB`, `KiB` (any case) all mean the same thing. A plain integer is bytes.
 * - Durations: `ns`, `us` (or `µs`), `ms`, `s`, `m`/`min`, `h`. A plain number is milliseconds.
 * - Bandwidths are bits per second with decimal multipliers, as in `tc`: `kbit` = 1000 bit/s,
 *   `mbit` = 10^6, `gbit` = 10^9, `tbit` = 10^12. A bare `K`/`M`/`G`/`T` means the same
 *   (`200M` = 200mbit). A plain number is bits/s. `mbps`-style units are rejected because
 *   `tc` reads them as bytes per second while people usually mean bits.
 */
import { SupercloudError } from './errors.ts'

/** A value could not be read as a size, duration or bandwidth. */
export class UnitError extends SupercloudError {
  constructor (message: string) {
    super('SC_BAD_UNIT', message, { exitCode: 2 })
  }
}

const NUMBER_WITH_UNIT = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Zµ]*)\s*$/

function quote (input: unknown): string {
  return typeof input === 'string' ? `'${input}'` : String(input)
}

function split (input: string): { value: number, unit: string } | undefined {
  const m = NUMBER_WITH_UNIT.exec(input)
  if (m === null) return undefined
  return { value: Number(m[1]), unit: (m[2] ?? '').toLowerCase() }
}

// ---------------------------------------------------------------- sizes

const KIB = 1024
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: KIB, ki: KIB, kb: KIB, kib: KIB,
  m: KIB ** 2, mi: KIB ** 2, mb: KIB ** 2, mib: KIB ** 2,
  g: KIB ** 3, gi: KIB ** 3, gb: KIB ** 3, gib: KIB ** 3,
  t: KIB ** 4, ti: KIB ** 4, tb: KIB ** 4, tib: KIB ** 4
}

export const SIZE_EXAMPLE = 'a size like 512M'

/** Bytes from `512M`, `1.5G`, `64MiB`, `1024K`, `4096` or a non-negative integer. Throws UnitError. */
export function parseSize (input: string | number): number {
  const bad = (why?: string): UnitError =>
    new UnitError(`expected ${SIZE_EXAMPLE}, got ${quote(input)}${why !== undefined ? ` (${why})` : ''}`)
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw bad('a plain number is a whole number of bytes')
    return input
  }
  if (typeof input !== 'string') throw bad()
  const p = split(input)
  if (p === undefined) throw bad()
  const mult = SIZE_UNITS[p.unit]
  if (mult === undefined) throw bad(p.unit.length <= 4 ? `unknown unit '${p.unit}'; use K, M, G or T` : undefined)
  const bytes = p.value * mult
  const rounded = Math.round(bytes)
  if (Math.abs(bytes - rounded) > 1e-6) throw bad('not a whole number of bytes')
  if (!Number.isSafeInteger(rounded)) throw bad('too large')
  return rounded
}

/**
 * Shortest exact text for a byte count, using the largest binary unit that represents it
 * with at most 3 decimals: formatBytes(536870912) === '512M', formatBytes(1610612736) === '1.5G'.
 * With `{ approximate: true }` rounds to one decimal for display ('976.6K').
 */
export function formatBytes (bytes: number, opts: { approximate?: boolean } = {}): string {
  if (!Number.isFinite(bytes)) return String(bytes)
  if (bytes < 0) return `-${formatBytes(-bytes, opts)}`
  const units: Array<[string, number]> = [['T', KIB ** 4], ['G', KIB ** 3], ['M', KIB ** 2], ['K', KIB]]
  for (const [suffix, mult] of units) {
    if (bytes < mult) continue
    const text = trimDecimals((bytes / mult).toFixed(opts.approximate === true ? 1 : 3))
    if (opts.approximate === true || Math.abs(Number(text) * mult - bytes) <= 1e-6) return `${text}${suffix}`
  }
  return `${opts.approximate === true ? trimDecimals(bytes.toFixed(1)) : bytes}B`
}

function trimDecimals (text: string): string {
  return text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text
}

// ---------------------------------------------------------------- durations

const DURATION_UNITS: Record<string, number> = {
  '': 1,
  ns: 1e-6,
  us: 1e-3, µs: 1e-3,
  ms: 1,
  s: 1000, sec: 1000,
  m: 60_000, min: 60_000,
  h: 3_600_000
}

export const DURATION_EXAMPLE = 'a duration like 5ms'

/** Milliseconds (possibly fractional) from `5ms`, `2s`, `100us`, `1.5m`, `1h` or a plain number of ms. */
export function parseDuration (input: string | number): number {
  const bad = (why?: string): UnitError =>
    new UnitError(`expected ${DURATION_EXAMPLE}, got ${quote(input)}${why !== undefined ? ` (${why})` : ''}`)
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw bad()
    return input
  }
  if (typeof input !== 'string') throw bad()
  const p = split(input)
  if (p === undefined) throw bad()
  const mult = DURATION_UNITS[p.unit]
  if (mult === undefined) throw bad(p.unit.length <= 4 ? `unknown unit '${p.unit}'; use us, ms, s, m or h` : undefined)
  return p.value * mult
}

/** Shortest text for a duration in ms: 5 → '5ms', 2000 → '2s', 0.1 → '100us', 0 → '0ms'. */
export function formatDuration (ms: number): string {
  if (!Number.isFinite(ms)) return String(ms)
  if (ms < 0) return `-${formatDuration(-ms)}`
  if (ms === 0) return '0ms'
  const units: Array<[string, number]> = [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1], ['us', 1e-3], ['ns', 1e-6]]
  for (const [suffix, mult] of units) {
    if (ms < mult && suffix !== 'ns') continue
    const text = trimDecimals((ms / mult).toFixed(3))
    if (Math.abs(Number(text) * mult - ms) <= 1e-9 * Math.max(1, ms) || suffix === 'ns') return `${text}${suffix}`
  }
  return `${ms}ms`
}

// ---------------------------------------------------------------- bandwidths

const BANDWIDTH_UNITS: Record<string, number> = {
  '': 1, bit: 1,
  k: 1e3, kbit: 1e3,
  m: 1e6, mbit: 1e6,
  g: 1e9, gbit: 1e9,
  t: 1e12, tbit: 1e12
}

export const BANDWIDTH_EXAMPLE = 'a bandwidth like 200mbit'

/** Bits per second from `200mbit`, `1gbit`, `1.5gbit`, `200M`, `64kbit` or a plain number of bits/s. */
export function parseBandwidth (input: string | number): number {
  const bad = (why?: string): UnitError =>
    new UnitError(`expected ${BANDWIDTH_EXAMPLE}, got ${quote(input)}${why !== undefined ? ` (${why})` : ''}`)
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw bad('a plain number is whole bits per second')
    return input
  }
  if (typeof input !== 'string') throw bad()
  const p = split(input)
  if (p === undefined) throw bad()
  const mult = BANDWIDTH_UNITS[p.unit]
  if (mult === undefined) {
    const m = /^([kmgt]?)(bps|b\/s|bytes?)$/.exec(p.unit)
    if (m !== null) throw bad(`'${p.unit}' is ambiguous; write ${p.value}${m[1] ?? ''}bit for bits per second`)
    throw bad(p.unit.length <= 5 ? `unknown unit '${p.unit}'; use kbit, mbit or gbit` : undefined)
  }
  const bps = p.value * mult
  const rounded = Math.round(bps)
  if (Math.abs(bps - rounded) > 1e-6) throw bad('not a whole number of bits per second')
  if (!Number.isSafeInteger(rounded)) throw bad('too large')
  return rounded
}

/** Shortest exact text for bits/s: 200e6 → '200mbit', 1e9 → '1gbit', 1.5e9 → '1.5gbit', 999 → '999bit'. */
export function formatBandwidth (bps: number): string {
  if (!Number.isFinite(bps)) return String(bps)
  if (bps < 0) return `-${formatBandwidth(-bps)}`
  const units: Array<[string, number]> = [['tbit', 1e12], ['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3]]
  for (const [suffix, mult] of units) {
    if (bps < mult) continue
    const text = trimDecimals((bps / mult).toFixed(3))
    if (Math.abs(Number(text) * mult - bps) <= 1e-6) return `${text}${suffix}`
  }
  return `${bps}bit`
}
