/**
 * Semantic checks and normalization of a schema-checked spec: each section in sections/*, in the
 * order that matters for address claims (site gateways, then hosts, then vm nics).
 */
import os from 'node:os'
import path from 'node:path'
import type { Spec } from '../../core/spec.ts'
import { formatIpv4 } from '../../core/ipv4.ts'
import type { SpecPath } from './locate.ts'
import { NAME_LIMITS, nameProblem, sanitizeName } from './names.ts'
import { isObject, str, type NormalizeContext, type Obj, type Report } from './raw.ts'
import { normalizeSites, normalizeWan } from './sections/sites.ts'
import { normalizeHosts } from './sections/hosts.ts'
import { normalizeImages } from './sections/images.ts'
import { normalizeVms } from './sections/vms.ts'
import { normalizeNetwork } from './sections/network.ts'
import { normalizeOverdriver } from './sections/overdriver.ts'
import { normalizeOperators, type ReadKeyFile } from './sections/operators.ts'

export interface ParseOptions {
  /** Directory `~` expands to in paths (ssh keys, images). Default: os.homedir(). */
  homeDir?: string
  /** Reads an operator's `keyFile` (loadSpec: from disk); absent: key files are read at `up`. */
  readKeyFile?: ReadKeyFile
}

export function normalize (raw: Obj, file: string, opts: ParseOptions, report: Report): Spec {
  const absFile = path.resolve(file)
  const baseDir = path.dirname(absFile)
  const ctx = normalizeContext(baseDir, opts.homeDir ?? os.homedir(), report)

  let name = sanitizeName(path.basename(baseDir))
  const rawName = str(raw.name)
  if (rawName !== undefined) {
    const problem = nameProblem('supercloud', rawName, NAME_LIMITS.supercloud)
    if (problem !== undefined) report(['name'], problem)
    name = rawName
  }

  const rawSites = isObject(raw.sites) ? raw.sites : {}
  const rawHosts = isObject(raw.hosts) ? raw.hosts : {}
  const rawImages = isObject(raw.images) ? raw.images : {}
  const siteResult = normalizeSites(raw.sites, ctx)
  const wan = normalizeWan(raw.wan, report)
  const hosts = normalizeHosts(rawHosts, rawSites, siteResult, ctx)
  const images = normalizeImages(rawImages, ctx)
  const vms = normalizeVms(raw.vms, { rawImages, rawHosts }, ctx)
  const network = normalizeNetwork(raw.network, { hosts, vms, rawSites, rawHosts }, ctx)

  const spec: Spec = { file: absFile, name, sites: siteResult.sites, wan, hosts, images, vms, network }
  const prices = str(raw.prices)
  if (prices !== undefined) spec.prices = ctx.resolvePath(prices)
  const state = str(raw.state)
  if (state !== undefined) spec.state = state
  if (Array.isArray(raw.operators)) spec.operators = normalizeOperators(raw.operators, ctx, opts.readKeyFile)
  if (raw.overdriver !== undefined) {
    const policy = normalizeOverdriver(raw.overdriver, hosts, report)
    if (policy !== undefined) spec.overdriver = policy
  }
  return spec
}

function normalizeContext (baseDir: string, home: string, report: Report): NormalizeContext {
  // Every address in use, to reject duplicates: number → who uses it.
  const used = new Map<number, string>()
  return {
    report,
    resolvePath: (p: string): string => {
      if (p === '~') return home
      if (p.startsWith('~/')) return path.join(home, p.slice(2))
      return path.resolve(baseDir, p)
    },
    checkName: (kind: keyof typeof NAME_LIMITS, name: string, at: SpecPath): void => {
      const problem = nameProblem(kind, name, NAME_LIMITS[kind])
      if (problem !== undefined) report(at, problem, 'key')
    },
    claim: (addr: number, owner: string, at: SpecPath): boolean => {
      const other = used.get(addr)
      if (other !== undefined) {
        report(at, `${formatIpv4(addr)} is already used by ${other}`)
        return false
      }
      used.set(addr, owner)
      return true
    }
  }
}
