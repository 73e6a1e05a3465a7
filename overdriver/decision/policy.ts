/**
 * The `overdriver:` section of supercloud.yaml (pure). parseOverdriverPolicy() turns the raw
 * YAML value into an OverdriverPolicy and a list of issues, each with the dotted path of the
 * field (`overdriver.window`), so the spec loader can place them in the file.
 *
 *   overdriver:
 *     interval: 10s          # how often each VM's paging rate is measured
 *     overload: 200          # paging operations/s above which an interval is overloaded
 *     window: 8/12           # sustained when 8 of the last 12 intervals were overloaded
 *     threshold: 120s        # initial migration threshold (duration of an overload)
 *     adaptive: true         # or false, or { base: 10 }: learn a lower threshold
 *     confidence: 0.97       # for `supercloud plan`'s capacity bound
 *     grace: 3               # intervals not observed after a VM arrived (or its allocation changed)
 *     migration-timeout: 10m # a decided migration nobody reported by then may be decided again
 *     repositories:
 *       hosts: [host-a, host-b]   # where page repositories may live; default all hosts
 *       memory: 256M              # memory each gives its repository, or { host-a: 256M, ... }
 */
import { DEFAULT_CONFIDENCE, DEFAULT_INITIAL_THRESHOLD_MS, DEFAULT_INTERVAL_MS, DEFAULT_OVERLOAD_OPS_PER_SEC, DEFAULT_PROFILER_BASE_COUNT, DEFAULT_QUIET_INTERVALS, DEFAULT_WINDOW_SIZE, DEFAULT_WINDOW_SUSTAINED, PAGE_SIZE } from '../constants.ts'
import { formatBytes, parseDuration, parseSize } from '../../core/units.ts'
import { suggest } from '../../core/suggest.ts'
import type { ControllerPolicy } from './decide.ts'

export type { OverdriverPolicy } from '../../core/spec.ts'
import type { OverdriverPolicy } from '../../core/spec.ts'

export interface PolicyIssue {
  /** Dotted path, e.g. "overdriver.repositories.memory.host-a". */
  field: string
  message: string
}

export interface PolicyContext {
  /** Host name → memory it offers to guests (bytes). */
  hosts: Record<string, { memoryBytes: number }>
}

const KEYS = ['interval', 'overload', 'window', 'threshold', 'adaptive', 'confidence', 'grace', 'migration-timeout', 'repositories'] as const
const REPO_KEYS = ['hosts', 'memory'] as const
const ADAPTIVE_KEYS = ['enabled', 'base'] as const

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function unknownKeys (obj: Record<string, unknown>, known: readonly string[], at: string, issues: PolicyIssue[]): void {
  for (const k of Object.keys(obj)) {
    if (known.includes(k)) continue
    const s = suggest(k, known)
    issues.push({ field: `${at}.${k}`, message: `unknown key '${k}'${s !== undefined ? ` (did you mean '${s}'?)` : ''}; expected one of ${known.join(', ')}` })
  }
}

/** `8/12`, `8 of 12`, or { sustained: 8, size: 12 } → the window, or a message. */
export function parseWindow (v: unknown): { size: number, sustained: number } | string {
  let sustained: unknown
  let size: unknown
  if (typeof v === 'string') {
    const m = /^\s*(\d+)\s*(?:\/|of)\s*(\d+)\s*$/.exec(v)
    if (m === null) return `expected '<overloaded>/<intervals>' like '8/12', got '${v}'`
    sustained = Number(m[1]); size = Number(m[2])
  } else if (isRecord(v)) {
    sustained = v.sustained; size = v.size
  } else {
    return `expected '<overloaded>/<intervals>' like '8/12', got ${JSON.stringify(v)}`
  }
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > 1000) return `window size must be a whole number of intervals from 1 to 1000, got ${String(size)}`
  if (typeof sustained !== 'number' || !Number.isInteger(sustained) || sustained < 1) return `overloaded count must be a whole number >= 1, got ${String(sustained)}`
  if (sustained > size) return `${sustained} overloaded intervals can never happen in a window of ${size}`
  return { size, sustained }
}

/**
 * Validates the `overdriver:` section. `raw` undefined gives the defaults (repositories on
 * no host). The policy is returned only when there are no issues.
 */
export function parseOverdriverPolicy (raw: unknown, ctx: PolicyContext, at = 'overdriver'): { policy?: OverdriverPolicy, issues: PolicyIssue[] } {
  const issues: PolicyIssue[] = []
  const report = (field: string, message: string): void => { issues.push({ field: field === '' ? at : `${at}.${field}`, message }) }
  const policy: OverdriverPolicy = {
    intervalMs: DEFAULT_INTERVAL_MS,
    overloadOpsPerSec: DEFAULT_OVERLOAD_OPS_PER_SEC,
    window: { size: DEFAULT_WINDOW_SIZE, sustained: DEFAULT_WINDOW_SUSTAINED },
    initialThresholdMs: DEFAULT_INITIAL_THRESHOLD_MS,
    adaptive: { enabled: true, baseCount: DEFAULT_PROFILER_BASE_COUNT },
    quietIntervals: DEFAULT_QUIET_INTERVALS,
    confidence: DEFAULT_CONFIDENCE,
    repositories: { hosts: [], memoryBytes: {} }
  }
  if (raw === undefined || raw === null) return { policy, issues }
  if (!isRecord(raw)) { report('', `expected a mapping with ${KEYS.join(', ')}`); return { issues } }
  unknownKeys(raw, KEYS, at, issues)

  const duration = (key: string, v: unknown): number | undefined => {
    if (typeof v !== 'string' && typeof v !== 'number') { report(key, `expected a duration like 10s, got ${JSON.stringify(v)}`); return undefined }
    try {
      // A bare number in this section means seconds (interval: 10), unlike elsewhere; say so in docs.
      return typeof v === 'number' ? v * 1000 : parseDuration(v)
    } catch (e) { report(key, (e as Error).message); return undefined }
  }

  if (raw.interval !== undefined) {
    const ms = duration('interval', raw.interval)
    if (ms !== undefined) {
      if (ms < 1000 || ms > 3_600_000) report('interval', 'must be from 1s to 1h')
      else policy.intervalMs = ms
    }
  }
  if (raw.overload !== undefined) {
    const v = raw.overload
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(/^\s*(\d+(?:\.\d+)?)\s*(?:ops\/s)?\s*$/.exec(v)?.[1] ?? NaN) : NaN
    if (!Number.isFinite(n) || n <= 0) report('overload', `expected paging operations per second above 0, like 200, got ${JSON.stringify(v)}`)
    else policy.overloadOpsPerSec = n
  }
  if (raw.window !== undefined) {
    const w = parseWindow(raw.window)
    if (typeof w === 'string') report('window', w)
    else policy.window = w
  }
  if (raw.threshold !== undefined) {
    const ms = duration('threshold', raw.threshold)
    if (ms !== undefined) {
      if (ms < policy.intervalMs) report('threshold', `must be at least one interval (${policy.intervalMs / 1000}s)`)
      else policy.initialThresholdMs = ms
    }
  }
  if (raw.adaptive !== undefined) {
    const a = raw.adaptive
    if (typeof a === 'boolean') policy.adaptive.enabled = a
    else if (a === 'on' || a === 'off') policy.adaptive.enabled = a === 'on'
    else if (isRecord(a)) {
      unknownKeys(a, ADAPTIVE_KEYS, `${at}.adaptive`, issues)
      if (a.enabled !== undefined) {
        if (typeof a.enabled !== 'boolean') report('adaptive.enabled', `expected true or false, got ${JSON.stringify(a.enabled)}`)
        else policy.adaptive.enabled = a.enabled
      }
      if (a.base !== undefined) {
        if (typeof a.base !== 'number' || !Number.isInteger(a.base) || a.base < 1) report('adaptive.base', `expected a whole number of transient overloads >= 1, got ${JSON.stringify(a.base)}`)
        else policy.adaptive.baseCount = a.base
      }
    } else report('adaptive', `expected true, false or { base: N }, got ${JSON.stringify(a)}`)
  }
  if (raw.confidence !== undefined) {
    const c = raw.confidence
    if (typeof c !== 'number' || !(c > 0 && c < 1)) report('confidence', `expected a probability between 0 and 1 (exclusive), like 0.97, got ${JSON.stringify(c)}`)
    else policy.confidence = c
  }
  if (raw.grace !== undefined) {
    const g = raw.grace
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 0 || g > 1000) report('grace', `expected a whole number of intervals from 0 to 1000, got ${JSON.stringify(g)}`)
    else policy.arrivalGraceIntervals = g
  }
  if (raw['migration-timeout'] !== undefined) {
    const ms = duration('migration-timeout', raw['migration-timeout'])
    if (ms !== undefined) {
      if (ms < policy.intervalMs) report('migration-timeout', `must be at least one interval (${policy.intervalMs / 1000}s)`)
      else policy.migrationTimeoutMs = ms
    }
  }
  if (raw.repositories !== undefined) {
    const r = raw.repositories
    if (!isRecord(r)) report('repositories', 'expected a mapping with hosts and memory')
    else {
      unknownKeys(r, REPO_KEYS, `${at}.repositories`, issues)
      const known = Object.keys(ctx.hosts)
      let hosts = known
      if (r.hosts !== undefined) {
        if (!Array.isArray(r.hosts) || r.hosts.some(h => typeof h !== 'string')) { report('repositories.hosts', 'expected a list of host names'); hosts = [] } else {
          hosts = []
          for (const [i, h] of (r.hosts as string[]).entries()) {
            if (!known.includes(h)) {
              const s = suggest(h, known)
              report(`repositories.hosts.${i}`, `no host named '${h}'${s !== undefined ? ` (did you mean '${s}'?)` : ''}`)
            } else if (hosts.includes(h)) report(`repositories.hosts.${i}`, `host '${h}' is listed twice`)
            else hosts.push(h)
          }
        }
      }
      policy.repositories.hosts = hosts
      const memFor = (h: string, v: unknown, field: string): void => {
        let bytes: number
        try { bytes = parseSize(v as string | number) } catch (e) { report(field, (e as Error).message); return }
        const host = ctx.hosts[h]
        if (bytes <= 0) report(field, 'must be above 0 (leave the host out of repositories.hosts instead)')
        else if (bytes % PAGE_SIZE !== 0) report(field, `${bytes} bytes is not a whole number of 4K pages`)
        else if (host !== undefined && bytes > host.memoryBytes) report(field, `${formatBytes(bytes)} is more than host ${h} offers (${formatBytes(host.memoryBytes)})`)
        else policy.repositories.memoryBytes[h] = bytes
      }
      if (r.memory === undefined) {
        if (hosts.length > 0) report('repositories.memory', 'say how much memory each repository host gives its page repository, e.g. memory: 256M')
      } else if (isRecord(r.memory)) {
        for (const [h, v] of Object.entries(r.memory)) {
          if (!hosts.includes(h)) report(`repositories.memory.${h}`, `'${h}' is not one of the repository hosts (${hosts.join(', ') || 'none'})`)
          else memFor(h, v, `repositories.memory.${h}`)
        }
        for (const h of hosts) if (!(h in r.memory)) report('repositories.memory', `no memory given for repository host '${h}'`)
      } else {
        for (const h of hosts) memFor(h, r.memory, 'repositories.memory')
      }
    }
  }
  const seen = new Set<string>()
  const unique = issues.filter(i => { const k = `${i.field}\n${i.message}`; if (seen.has(k)) return false; seen.add(k); return true })
  return unique.length === 0 ? { policy, issues: unique } : { issues: unique }
}
