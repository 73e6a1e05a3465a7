/**
 * Loads supercloud.yaml: YAML (with source positions) → JSON Schema validation (schema.ts)
 * → semantic checks (references, subnets, addresses, names) → the normalized Spec of types.ts.
 * Every problem becomes a SpecIssue naming file, line, column and dotted field; all issues
 * are reported together in one SpecError, sorted by line.
 */
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { LineCounter, parseDocument } from 'yaml'
import { SpecError, type SpecIssue } from '../../core/errors.ts'
import type { Accel, DiskSpec, DriverName, Ec2HostOptions, HostSpec, ImageSpec, NetworkSpec, NicSpec, SiteSpec, Spec, VmSpec, WanSpec } from '../../core/spec.ts'
import type { WireSpec } from '../../virtualwire/types.ts'
import { crossSiteProblems, emptyNetwork, parseWire, wireContext, wireProblems, formatWireEnd } from '../../virtualwire/topology/wires.ts'
import { checkValue, specSchema, VALUE_EXAMPLES, type ValueKind } from './schema.ts'
import { isL2fwMatch } from '../../images/guest/cmdline.ts'
import { parseOverdriverPolicy } from '../../overdriver/decision/policy.ts'
import { formatPath, Locator, pointerToPath, type SpecPath } from './locate.ts'
import { formatBytes, parseBandwidth, parseDuration, parseSize } from '../../core/units.ts'
import { suggest } from '../../core/suggest.ts'
import { broadcastOf, cidrContains, cidrsOverlap, firstHostOf, formatCidr, formatIpv4, networkOf, parseCidr, parseIpv4, type Cidr } from '../../core/ipv4.ts'

export interface ParseOptions {
  /** Directory `~` expands to in paths (ssh keys, images). Default: os.homedir(). */
  homeDir?: string
}

export { suggest } from '../../core/suggest.ts'

/** Name limits (DNS-label-like: lowercase letters, digits, '-', starting with a letter). */
export const NAME_LIMITS = { supercloud: 20, site: 20, host: 20, image: 32, vm: 32, disk: 32, nic: 15, switch: 32 } as const

const DEFAULT_HOST_CPUS = 2
const DEFAULT_HOST_MEMORY = 2 * 1024 ** 3
const DEFAULT_VM_CPUS = 1
const DEFAULT_SSH_PORT = 22
const DEFAULT_SSH_USER = 'root'
const MIB = 1024 ** 2

let validator: ValidateFunction | undefined

function schemaValidator (): ValidateFunction {
  if (validator !== undefined) return validator
  const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true })
  ajv.addKeyword({
    keyword: 'parse',
    schemaType: 'string',
    validate: (kind: ValueKind, data: unknown) => checkValue(kind, data) === undefined
  })
  validator = ajv.compile(specSchema)
  return validator
}

/** Reads and parses a spec file. A missing or unreadable file is a SpecError at line 0. */
export async function loadSpec (file: string, opts: ParseOptions = {}): Promise<Spec> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const message = code === 'ENOENT'
      ? 'spec file not found'
      : code === 'EISDIR'
        ? 'is a directory; expected a supercloud.yaml file'
        : `cannot read spec file: ${(err as Error).message}`
    throw new SpecError([{ file, line: 0, column: 0, field: '(file)', message }])
  }
  return parseSpec(text, file, opts)
}

/** Parses and validates spec text (no I/O). `file` is used in messages and to resolve relative paths. */
export function parseSpec (text: string, file: string, opts: ParseOptions = {}): Spec {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false })
  const issues: SpecIssue[] = []

  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const p = lines.linePos(e.pos[0])
      issues.push({ file, line: p.line, column: p.col, field: '(yaml)', message: yamlMessage(e.message) })
    }
    throw new SpecError(sortIssues(issues))
  }

  const locator = new Locator(doc, lines)
  const seen = new Set<string>()
  const report = (p: SpecPath, message: string, which: 'key' | 'value' = 'value'): void => {
    const field = formatPath(p)
    const pos = locator.position(p, which)
    const id = `${field}\0${message}`
    if (seen.has(id)) return
    seen.add(id)
    issues.push({ file, line: pos.line, column: pos.column, field, message })
  }

  let raw: unknown
  try {
    raw = doc.toJS({ maxAliasCount: 1000 })
  } catch (err) {
    report([], `cannot read the YAML: ${(err as Error).message}`)
    throw new SpecError(issues)
  }
  if (raw === null || raw === undefined) {
    report([], 'the spec is empty; expected a map with sites, hosts, images and vms')
    throw new SpecError(issues)
  }

  const validate = schemaValidator()
  const schemaFields = new Set<string>()
  if (validate(raw) !== true) {
    for (const e of validate.errors ?? []) {
      const mapped = schemaIssue(e, raw)
      if (mapped === undefined) continue
      schemaFields.add(formatPath(mapped.path))
      report(mapped.path, mapped.message, mapped.which)
    }
  }
  if (!isObject(raw)) throw new SpecError(sortIssues(issues))

  const spec = normalize(raw, file, opts, (p, message, which) => {
    // A field the schema already rejected needs no second, derived complaint.
    if (!schemaFields.has(formatPath(p))) report(p, message, which)
  })
  if (issues.length > 0) throw new SpecError(sortIssues(issues))
  return spec
}

function sortIssues (issues: SpecIssue[]): SpecIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.column - b.column || a.field.localeCompare(b.field))
}

function yamlMessage (message: string): string {
  // yaml's messages sometimes end with a source excerpt even without prettyErrors; keep the first line.
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '').trim()
}

// ---------------------------------------------------------------- schema errors → issues

interface MappedIssue { path: SpecPath, message: string, which: 'key' | 'value' }

function schemaIssue (e: ErrorObject, data: unknown): MappedIssue | undefined {
  const at = pointerToPath(e.instancePath, data)
  const parent = (e.parentSchema ?? {}) as Record<string, unknown>
  const params = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'if':
      return undefined // the failing branch reports the details
    case 'additionalProperties': {
      const key = String(params.additionalProperty)
      const known = Object.keys((parent.properties ?? {}) as Record<string, unknown>)
      const guess = suggest(key, known)
      const hint = guess !== undefined ? ` (did you mean '${guess}'?)` : known.length > 0 ? `; known keys: ${known.join(', ')}` : ''
      return { path: [...at, key], message: `unknown key '${key}'${hint}`, which: 'key' }
    }
    case 'required':
      return { path: at, message: `missing required field '${String(params.missingProperty)}'`, which: 'key' }
    case 'type': {
      const kind = parent.parse as ValueKind | undefined
      const expected = kind !== undefined ? VALUE_EXAMPLES[kind] : describeTypes(String(params.type))
      return { path: at, message: `expected ${expected}, got ${describeValue(e.data)}`, which: 'value' }
    }
    case 'parse':
      return { path: at, message: checkValue(e.schema as ValueKind, e.data) ?? 'invalid value', which: 'value' }
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String)
      const guess = typeof e.data === 'string' ? suggest(e.data, allowed) : undefined
      return {
        path: at,
        message: `expected one of ${allowed.join(', ')}, got ${describeValue(e.data)}${guess !== undefined ? ` (did you mean '${guess}'?)` : ''}`,
        which: 'value'
      }
    }
    case 'minimum':
      return { path: at, message: `must be at least ${String(params.limit)}, got ${describeValue(e.data)}`, which: 'value' }
    case 'maximum':
      return { path: at, message: `must be at most ${String(params.limit)}, got ${describeValue(e.data)}`, which: 'value' }
    case 'minLength':
      return { path: at, message: 'must not be empty', which: 'value' }
    default:
      return { path: at, message: e.message ?? `fails ${e.keyword}`, which: 'value' }
  }
}

function describeTypes (types: string): string {
  const names: Record<string, string> = {
    object: 'a map', array: 'a list', string: 'text', integer: 'a whole number', number: 'a number', boolean: 'true or false'
  }
  return types.split(',').filter(t => t !== 'null').map(t => names[t] ?? t).join(' or ')
}

function describeValue (value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'a map'
  if (typeof value === 'string') return `'${value}'`
  return String(value)
}

// ---------------------------------------------------------------- semantic checks and normalization

type Report = (path: SpecPath, message: string, which?: 'key' | 'value') => void
type Obj = Record<string, unknown>

function isObject (v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function entries (v: unknown): Array<[string, unknown]> {
  return isObject(v) ? Object.entries(v) : []
}

function str (v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined
}

function tryParse (fn: (v: string | number) => number, v: unknown): number | undefined {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined
  try { return fn(v) } catch { return undefined }
}

const NAME = /^[a-z]([a-z0-9-]*[a-z0-9])?$/

/** Checks a DNS-label-like name; returns a message or undefined. */
export function nameProblem (kind: string, name: string, max: number): string | undefined {
  if (!NAME.test(name)) {
    return `${kind} name '${name}' must use only lowercase letters, digits and '-', start with a letter and not end with '-'`
  }
  if (name.length > max) return `${kind} name '${name}' is ${name.length} characters long; the limit is ${max}`
  return undefined
}

/** A supercloud name derived from a directory name: lowercased, other characters → '-', max 20. */
export function sanitizeName (dirName: string): string {
  const s = dirName.toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, NAME_LIMITS.supercloud)
    .replace(/-+$/, '')
  return s === '' ? 'supercloud' : s
}

function unknownRef (kind: string, name: string, known: string[]): string {
  const guess = suggest(name, known)
  const list = known.length > 0 ? `; defined ${kind}s: ${known.join(', ')}` : `; no ${kind}s are defined`
  return `unknown ${kind} '${name}'${guess !== undefined ? ` (did you mean '${guess}'?)` : list}`
}

function normalize (raw: Obj, file: string, opts: ParseOptions, report: Report): Spec {
  const absFile = path.resolve(file)
  const baseDir = path.dirname(absFile)
  const home = opts.homeDir ?? os.homedir()
  const resolvePath = (p: string): string => {
    if (p === '~') return home
    if (p.startsWith('~/')) return path.join(home, p.slice(2))
    return path.resolve(baseDir, p)
  }
  const checkName = (kind: keyof typeof NAME_LIMITS, name: string, at: SpecPath): void => {
    const problem = nameProblem(kind, name, NAME_LIMITS[kind])
    if (problem !== undefined) report(at, problem, 'key')
  }

  // name
  let name = sanitizeName(path.basename(baseDir))
  const rawName = str(raw.name)
  if (rawName !== undefined) {
    const problem = nameProblem('supercloud', rawName, NAME_LIMITS.supercloud)
    if (problem !== undefined) report(['name'], problem)
    name = rawName
  }

  // Every address in use, to reject duplicates: number → who uses it.
  const used = new Map<number, string>()
  const claim = (addr: number, owner: string, at: SpecPath): boolean => {
    const other = used.get(addr)
    if (other !== undefined) {
      report(at, `${formatIpv4(addr)} is already used by ${other}`)
      return false
    }
    used.set(addr, owner)
    return true
  }

  // sites
  const sites: Record<string, SiteSpec> = {}
  const nets = new Map<string, Cidr>()
  const gateways = new Map<string, number>()
  for (const [siteName, v] of entries(raw.sites)) {
    checkName('site', siteName, ['sites', siteName])
    const s = isObject(v) ? v : {}
    const site: SiteSpec = { name: siteName }
    sites[siteName] = site
    const at: SpecPath = ['sites', siteName, 'subnet']
    const c = typeof s.subnet === 'string' ? parseCidr(s.subnet) : undefined
    if (c !== undefined) {
      const net = networkOf(c)
      if (c.address !== net) {
        report(at, `${formatCidr(c)} has host bits set; did you mean ${formatIpv4(net)}/${c.prefix}?`)
      } else if (c.prefix > 30) {
        report(at, `a /${c.prefix} subnet has no room for a gateway and hosts; use /30 or larger, e.g. /24`)
      } else {
        for (const [other, oc] of nets) {
          if (cidrsOverlap(c, oc)) report(at, `${formatCidr(c)} overlaps ${formatCidr(oc)} of site '${other}'`)
        }
        nets.set(siteName, c)
        site.subnet = formatCidr(c)
      }
    }
    const gw = typeof s.gateway === 'string' ? parseIpv4(s.gateway) : undefined
    const gAt: SpecPath = ['sites', siteName, 'gateway']
    if (gw !== undefined) {
      const sub = nets.get(siteName)
      if (s.subnet === undefined) report(gAt, 'a gateway needs a subnet on the same site')
      else if (sub !== undefined) {
        if (!cidrContains(sub, gw)) report(gAt, `gateway ${formatIpv4(gw)} is outside the site subnet ${formatCidr(sub)}`)
        else if (gw === networkOf(sub) || gw === broadcastOf(sub)) report(gAt, `gateway ${formatIpv4(gw)} is the ${gw === networkOf(sub) ? 'network' : 'broadcast'} address of ${formatCidr(sub)}`)
        else gateways.set(siteName, gw)
      }
    } else {
      const sub = nets.get(siteName)
      if (sub !== undefined && s.gateway === undefined) gateways.set(siteName, firstHostOf(sub))
    }
    const g = gateways.get(siteName)
    if (g !== undefined) {
      site.gateway = formatIpv4(g)
      claim(g, `the gateway of site '${siteName}'`, s.gateway !== undefined ? gAt : at)
    }
  }
  const rawSites = isObject(raw.sites) ? raw.sites : {}
  const siteNames = Object.keys(rawSites)

  // wan
  const wan: WanSpec = { delayMs: 0 }
  const rawWan = isObject(raw.wan) ? raw.wan : {}
  if (rawWan.bandwidth !== undefined) {
    const bps = tryParse(parseBandwidth, rawWan.bandwidth)
    if (bps === 0) report(['wan', 'bandwidth'], 'must be above 0; leave bandwidth out for an unlimited WAN')
    else if (bps !== undefined) wan.bandwidthBps = bps
  }
  if (rawWan.delay !== undefined) {
    const ms = tryParse(parseDuration, rawWan.delay)
    if (ms !== undefined) wan.delayMs = ms
  }

  // hosts
  const hosts: Record<string, HostSpec> = {}
  const rawHosts = isObject(raw.hosts) ? raw.hosts : {}
  for (const [hostName, v] of entries(rawHosts)) {
    const at: SpecPath = ['hosts', hostName]
    checkName('host', hostName, at)
    if (!isObject(v)) continue
    const driver: DriverName = v.driver === 'ssh' || v.driver === 'ec2' ? v.driver : 'local'
    const siteName = str(v.site) ?? ''
    if (siteName !== '' && !(siteName in rawSites)) {
      report([...at, 'site'], unknownRef('site', siteName, siteNames))
    } else if (siteName !== '' && driver === 'local' && (v.driver === undefined || v.driver === 'local') && !nets.has(siteName)) {
      const rs = rawSites[siteName]
      if (!isObject(rs) || rs.subnet === undefined) report([...at, 'site'], `local hosts need a site with a subnet; site '${siteName}' has none`)
    }
    let memoryBytes = DEFAULT_HOST_MEMORY
    if (v.memory !== undefined) {
      const m = tryParse(parseSize, v.memory)
      if (m === 0) report([...at, 'memory'], 'must be above 0')
      else if (m !== undefined) memoryBytes = m
    }
    const hv = isObject(v.hypervisor) ? v.hypervisor : {}
    const accel: Accel = hv.accel === 'kvm' || hv.accel === 'tcg' ? hv.accel : 'auto'
    const host: HostSpec = {
      name: hostName,
      site: siteName,
      driver,
      cpus: typeof v.cpus === 'number' ? v.cpus : DEFAULT_HOST_CPUS,
      memoryBytes,
      hypervisor: { backend: hv.backend === 'xen' ? 'xen' : 'qemu', accel }
    }
    if (hv.backend === 'xen') {
      if (hv.accel !== undefined && hv.accel !== 'auto') report([...at, 'hypervisor', 'accel'], `accel is for the qemu backend; a xen host runs its guests as Xen domains (remove accel: ${String(hv.accel)})`, 'key')
      if (driver === 'ec2') report([...at, 'hypervisor', 'backend'], 'the ec2 driver cannot run Xen yet: an EC2 instance other than *.metal is a Nitro (KVM) guest without nested virtualization, so Xen cannot be its hypervisor; use backend qemu')
    }
    hosts[hostName] = host
    if (driver !== 'ec2' && v.ec2 !== undefined) report([...at, 'ec2'], "ec2 settings are only used with 'driver: ec2'", 'key')
    if (driver === 'local') {
      if (v.ssh !== undefined) report([...at, 'ssh'], "ssh settings are only used with 'driver: ssh'", 'key')
      host.local = {}
      const addr = typeof v.address === 'string' ? parseIpv4(v.address) : undefined
      const sub = nets.get(siteName)
      if (addr !== undefined && sub !== undefined) {
        const aAt: SpecPath = [...at, 'address']
        const a = formatIpv4(addr)
        if (!cidrContains(sub, addr)) report(aAt, `${a} is outside the subnet ${formatCidr(sub)} of site '${siteName}'`)
        else if (addr === networkOf(sub) || addr === broadcastOf(sub)) report(aAt, `${a} is the ${addr === networkOf(sub) ? 'network' : 'broadcast'} address of ${formatCidr(sub)}`)
        else if (addr === gateways.get(siteName)) report(aAt, `${a} is the gateway of site '${siteName}'; pick another address`)
        else if (claim(addr, `host '${hostName}'`, aAt)) host.local.address = a
      }
    } else if (driver === 'ec2') {
      if (v.address !== undefined) report([...at, 'address'], "'address' is for local hosts; EC2 gives an ec2 host its addresses", 'key')
      if (v.ssh !== undefined) report([...at, 'ssh'], "ssh settings are only used with 'driver: ssh' (an ec2 host's SSH user is ec2.user)", 'key')
      if (v.ec2 === undefined) report(at, "hosts with 'driver: ec2' need an 'ec2' section with region, ami and instanceType", 'key')
      if (isObject(v.ec2)) host.ec2 = normalizeEc2(v.ec2, [...at, 'ec2'], report)
    } else {
      if (v.address !== undefined) report([...at, 'address'], "'address' is for local hosts; ssh hosts are reached at ssh.address", 'key')
      if (v.ssh === undefined) report(at, "hosts with 'driver: ssh' need an 'ssh' section with address and key", 'key')
      if (isObject(v.ssh)) {
        const s = v.ssh
        host.ssh = {
          address: str(s.address) ?? '',
          port: typeof s.port === 'number' ? s.port : DEFAULT_SSH_PORT,
          user: str(s.user) ?? DEFAULT_SSH_USER,
          key: resolvePath(str(s.key) ?? '')
        }
        const bridge = str(s.guestBridge)
        if (bridge !== undefined) host.ssh.guestBridge = bridge
      }
    }
  }
  const hostNames = Object.keys(rawHosts)
  // An ec2 host is not on a site subnet (EC2 gives its addresses): it does not share a site with local hosts.
  for (const [siteName, site] of Object.entries(sites)) {
    const members = Object.values(hosts).filter(h => h.site === siteName)
    const local = members.find(h => h.driver === 'local')
    for (const h of members.filter(h => h.driver === 'ec2')) {
      if (local !== undefined) report(['hosts', h.name, 'site'], `site '${siteName}' has local host '${local.name}'; put ec2 hosts in a site of their own (EC2 gives their addresses${site.subnet !== undefined ? `, not ${site.subnet}` : ''})`)
    }
  }

  // images
  const images: Record<string, ImageSpec> = {}
  const rawImages = isObject(raw.images) ? raw.images : {}
  for (const [imageName, v] of entries(rawImages)) {
    const at: SpecPath = ['images', imageName]
    checkName('image', imageName, at)
    if (!isObject(v)) continue
    const kinds = (['builtin', 'qcow2', 'kernel'] as const).filter(k => v[k] !== undefined)
    const [kind, second] = kinds
    if (kind === undefined) {
      report(at, 'an image needs one of builtin, qcow2 or kernel', 'key')
      continue
    }
    if (second !== undefined) report([...at, second], `an image is either builtin, qcow2 or kernel; '${imageName}' has both ${kind} and ${second}`, 'key')
    if (kind !== 'kernel') {
      for (const k of ['initrd', 'append'] as const) {
        if (v[k] !== undefined) report([...at, k], `'${k}' is only used with kernel images`, 'key')
      }
    }
    if (kind === 'builtin') images[imageName] = { name: imageName, kind: 'builtin', builtin: 'tiny' }
    else if (kind === 'qcow2') images[imageName] = { name: imageName, kind: 'qcow2', path: resolvePath(str(v.qcow2) ?? '') }
    else {
      const img: ImageSpec & { kind: 'kernel' } = { name: imageName, kind: 'kernel', kernel: resolvePath(str(v.kernel) ?? '') }
      const initrd = str(v.initrd)
      if (initrd !== undefined) img.initrd = resolvePath(initrd)
      if (typeof v.append === 'string') img.append = v.append
      images[imageName] = img
    }
  }
  const imageNames = Object.keys(rawImages)

  // vms
  const vms: Record<string, VmSpec> = {}
  const macs = new Map<string, string>()
  for (const [vmName, v] of entries(raw.vms)) {
    const at: SpecPath = ['vms', vmName]
    checkName('vm', vmName, at)
    if (!isObject(v)) continue
    const image = str(v.image) ?? ''
    if (image !== '' && !(image in rawImages)) report([...at, 'image'], unknownRef('image', image, imageNames))
    const hostName = str(v.host)
    if (hostName !== undefined && !(hostName in rawHosts)) report([...at, 'host'], unknownRef('host', hostName, hostNames))

    // memory: a size (requested = allocated) or { requested, allocated }
    let requested: number | undefined
    let allocated: number | undefined
    const mAt: SpecPath = [...at, 'memory']
    if (isObject(v.memory)) {
      requested = tryParse(parseSize, v.memory.requested)
      allocated = v.memory.allocated === undefined ? requested : tryParse(parseSize, v.memory.allocated)
      if (requested !== undefined) checkVmMemory(requested, [...mAt, 'requested'], report)
      if (allocated === 0) report([...mAt, 'allocated'], 'must be above 0')
      else if (allocated !== undefined && requested !== undefined && allocated > requested) {
        report([...mAt, 'allocated'], `${formatBytes(allocated)} is above requested ${formatBytes(requested)}`)
      }
    } else {
      requested = allocated = tryParse(parseSize, v.memory)
      if (requested !== undefined) checkVmMemory(requested, mAt, report)
    }

    // disks
    const disks: DiskSpec[] = []
    const diskNames = new Set<string>()
    const rawDisks = Array.isArray(v.disks) ? v.disks : []
    rawDisks.forEach((d: unknown, i: number) => {
      if (!isObject(d)) return
      const dAt: SpecPath = [...at, 'disks', i]
      const explicit = str(d.name)
      const diskName = explicit ?? `disk${i}`
      if (explicit !== undefined) {
        const problem = nameProblem('disk', explicit, NAME_LIMITS.disk)
        if (problem !== undefined) report([...dAt, 'name'], problem)
      }
      if (diskNames.has(diskName)) report(explicit !== undefined ? [...dAt, 'name'] : dAt, `disk name '${diskName}' is used twice in vm '${vmName}'`)
      diskNames.add(diskName)
      const sizeBytes = tryParse(parseSize, d.size)
      if (sizeBytes === 0) report([...dAt, 'size'], 'must be above 0')
      disks.push({ name: diskName, sizeBytes: sizeBytes ?? 0 })
    })

    // nics
    const nics: NicSpec[] = []
    const nicNames = new Set<string>()
    const rawNics: unknown[] = v.nics === undefined ? [{}] : Array.isArray(v.nics) ? v.nics : []
    rawNics.forEach((n: unknown, i: number) => {
      if (!isObject(n)) return
      const nAt: SpecPath = [...at, 'nics', i]
      const explicit = str(n.name)
      const nicName = explicit ?? `eth${i}`
      if (explicit !== undefined) {
        const problem = nameProblem('nic', explicit, NAME_LIMITS.nic)
        if (problem !== undefined) report([...nAt, 'name'], problem)
      }
      if (nicNames.has(nicName)) report(explicit !== undefined ? [...nAt, 'name'] : nAt, `nic name '${nicName}' is used twice in vm '${vmName}'`)
      nicNames.add(nicName)
      const nic: NicSpec = { name: nicName }
      const c = typeof n.address === 'string' ? parseCidr(n.address) : undefined
      if (c !== undefined) {
        const aAt: SpecPath = [...nAt, 'address']
        if (c.prefix <= 30 && (c.address === networkOf(c) || c.address === broadcastOf(c))) {
          report(aAt, `${formatIpv4(c.address)} is the ${c.address === networkOf(c) ? 'network' : 'broadcast'} address of ${formatIpv4(networkOf(c))}/${c.prefix}`)
        } else if (claim(c.address, `vm '${vmName}' (nic ${nicName})`, aAt)) {
          nic.address = formatCidr(c)
        }
      }
      if (typeof n.mac === 'string' && checkValue('mac', n.mac) === undefined) {
        const mac = n.mac.toLowerCase()
        const other = macs.get(mac)
        if (other !== undefined) report([...nAt, 'mac'], `MAC address ${mac} is already used by ${other}`)
        else macs.set(mac, `vm '${vmName}' (nic ${nicName})`)
        nic.mac = mac
      }
      nics.push(nic)
    })

    const vm: VmSpec = {
      name: vmName,
      image,
      cpus: typeof v.cpus === 'number' ? v.cpus : DEFAULT_VM_CPUS,
      memory: { requestedBytes: requested ?? 0, allocatedBytes: allocated ?? 0 },
      disks,
      nics
    }
    if (hostName !== undefined) vm.host = hostName
    if (v.swap !== undefined) {
      const swap = tryParse(parseSize, v.swap)
      if (swap === 0) report([...at, 'swap'], 'must be above 0 (leave swap out for no swap disk)')
      else if (swap !== undefined && swap % MIB !== 0) report([...at, 'swap'], `${formatBytes(swap)} is not a whole number of MiB`)
      else if (swap !== undefined) vm.swapBytes = swap
    }
    if (typeof v.gateway === 'string') vm.gateway = v.gateway
    if (typeof v.firewall === 'object' && v.firewall !== null) {
      const fw = v.firewall as { between?: unknown, allow?: unknown, drop?: unknown, default?: unknown }
      const between = Array.isArray(fw.between) ? fw.between.map(String) : []
      const names = nics.map(n => n.name)
      between.forEach((b, i) => { if (!names.includes(b)) report([...at, 'firewall', 'between', i], `'${b}' is not a NIC of ${vmName} (${names.join(', ') || 'it has none'})`) })
      if (between.length === 2 && between[0] === between[1]) report([...at, 'firewall', 'between'], 'the firewall needs two different NICs')
      const list = (x: unknown): string[] => Array.isArray(x) ? x.map(String) : []
      vm.firewall = { between: [between[0] ?? '', between[1] ?? ''], allow: list(fw.allow), drop: list(fw.drop), default: fw.default === 'allow' ? 'allow' : 'drop' }
      for (const [k, rules] of [['allow', vm.firewall.allow], ['drop', vm.firewall.drop]] as const) {
        rules.forEach((m, i) => { if (!isL2fwMatch(m)) report([...at, 'firewall', k, i], `'${m}' is not a firewall match (e.g. arp, icmp, udp:7, tcp:80-90, vlan:10+ipv4)`) })
      }
    }
    vms[vmName] = vm
  }

  const network = normalizeNetwork(raw.network, { hosts, vms, rawSites, rawHosts }, checkName, report)

  const spec: Spec = { file: absFile, name, sites, wan, hosts, images, vms, network }
  const prices = str(raw.prices)
  if (prices !== undefined) spec.prices = resolvePath(prices)
  if (raw.overdriver !== undefined) {
    const ctx = { hosts: Object.fromEntries(Object.values(hosts).map(h => [h.name, { memoryBytes: h.memoryBytes }])) }
    const { policy, issues } = parseOverdriverPolicy(raw.overdriver, ctx)
    for (const i of issues) report(policyFieldPath(i.field), i.message)
    if (policy !== undefined) spec.overdriver = policy
  }
  return spec
}

/** `overdriver.repositories.hosts.0` → ['overdriver', 'repositories', 'hosts', 0]. */
function policyFieldPath (field: string): SpecPath {
  return field.split('.').map(s => /^\d+$/.test(s) ? Number(s) : s)
}

/** `hosts.<name>.ec2` → Ec2HostOptions; the same value rules as the driver (drivers/ec2/plan.ts hostOptions). */
function normalizeEc2 (e: Obj, at: SpecPath, report: Report): Ec2HostOptions {
  const o: Ec2HostOptions = { region: str(e.region) ?? '', ami: str(e.ami) ?? '', instanceType: str(e.instanceType) ?? '' }
  const check = (key: string, ok: boolean, message: string): void => { if (!ok) report([...at, key], message) }
  if (o.region !== '') check('region', /^[a-z]{2}(-[a-z]+)+-\d+$/.test(o.region), `'${o.region}' is not an AWS region name (e.g. eu-west-1)`)
  if (o.ami !== '') check('ami', /^ami-[0-9a-f]{8}([0-9a-f]{9})?$/.test(o.ami), `'${o.ami}' is not an AMI id (ami- and 8 or 17 hex digits, e.g. ami-0123456789abcdef0)`)
  if (o.instanceType !== '') check('instanceType', /^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$/.test(o.instanceType), `'${o.instanceType}' is not an instance type (e.g. m5.large)`)
  if (typeof e.spot === 'boolean') o.spot = e.spot
  const sshFrom = str(e.sshFrom)
  if (sshFrom !== undefined) {
    const ip = parseIpv4(sshFrom)
    const c = ip !== undefined ? { address: ip, prefix: 32 } : parseCidr(sshFrom)
    if (c === undefined) report([...at, 'sshFrom'], `expected an IPv4 address or CIDR (who may SSH in) like 203.0.113.7/32, got '${sshFrom}'`)
    else if (c.address !== networkOf(c)) report([...at, 'sshFrom'], `${formatCidr(c)} has host bits set; did you mean ${formatIpv4(networkOf(c))}/${c.prefix}, or ${formatIpv4(c.address)}/32?`)
    else o.sshFrom = formatCidr(c)
  }
  const subnetId = str(e.subnetId)
  if (subnetId !== undefined) {
    check('subnetId', /^subnet-[0-9a-f]{8}([0-9a-f]{9})?$/.test(subnetId), `'${subnetId}' is not a subnet id (subnet- and 8 or 17 hex digits)`)
    o.subnetId = subnetId
  }
  const endpoint = str(e.endpoint)
  if (endpoint !== undefined) {
    let ok = false
    try { ok = ['http:', 'https:'].includes(new URL(endpoint).protocol) } catch { ok = false }
    check('endpoint', ok, `'${endpoint}' is not an http(s) URL (e.g. https://ec2.eu-west-1.amazonaws.com)`)
    o.endpoint = endpoint
  }
  const user = str(e.user)
  if (user !== undefined) {
    check('user', /^[a-z_][a-z0-9_-]*$/.test(user), `'${user}' is not a user name`)
    o.user = user
  }
  return o
}

const DEFAULT_VW_PORT = 4789

interface NetworkInputs {
  hosts: Record<string, HostSpec>
  vms: Record<string, VmSpec>
  rawSites: Obj
  rawHosts: Obj
}

/** `network:` → NetworkSpec; rules in virtualwire/topology/wires.ts, reported at `network.…` fields. */
function normalizeNetwork (rawNetwork: unknown, ins: NetworkInputs, checkName: (kind: keyof typeof NAME_LIMITS, name: string, at: SpecPath) => void, report: Report): NetworkSpec {
  const network = emptyNetwork(DEFAULT_VW_PORT)
  if (!isObject(rawNetwork)) return network
  if (typeof rawNetwork.port === 'number') network.port = rawNetwork.port
  const hostNames = Object.keys(ins.rawHosts)

  for (const [swName, v] of entries(rawNetwork.switches)) {
    const at: SpecPath = ['network', 'switches', swName]
    checkName('switch', swName, at)
    if (ins.vms[swName] !== undefined) report(at, `'${swName}' is already the name of a vm; a switch needs its own name`, 'key')
    if (!isObject(v)) continue
    const host = str(v.host) ?? ''
    if (host !== '' && !(host in ins.rawHosts)) report([...at, 'host'], unknownRef('host', host, hostNames))
    network.switches[swName] = { name: swName, host }
  }

  for (const [site, v] of entries(rawNetwork.extenders)) {
    const at: SpecPath = ['network', 'extenders', site]
    const knownSite = site in ins.rawSites
    if (!knownSite) report(at, unknownRef('site', site, Object.keys(ins.rawSites)), 'key')
    if (!isObject(v)) continue
    const gateway = str(v.gateway) ?? ''
    const gwHost = ins.hosts[gateway]
    if (gateway !== '' && !(gateway in ins.rawHosts)) report([...at, 'gateway'], unknownRef('host', gateway, hostNames))
    else if (knownSite && gwHost !== undefined && gwHost.site !== '' && gwHost.site !== site) {
      report([...at, 'gateway'], `host '${gateway}' is in site '${gwHost.site}', not '${site}'; an extender's gateway must be a host of its own site`)
    }
    network.extenders[site] = { site, gateway }
  }

  // Wires: syntax first, then the component rules and (for VMs with explicit hosts) the extender rule.
  const parsed: WireSpec[] = []
  const at: number[] = []
  const rawWires = Array.isArray(rawNetwork.wires) ? rawNetwork.wires : []
  rawWires.forEach((w: unknown, i: number) => {
    if (typeof w !== 'string') return
    const r = parseWire(w)
    if (typeof r === 'string') report(['network', 'wires', i], r)
    else { parsed.push(r); at.push(i) }
  })
  const ctx = wireContext({ vms: ins.vms, hosts: ins.hosts, network })
  const problems = wireProblems(ctx, parsed)
  for (const p of problems) report(['network', 'wires', at[p.index] ?? 0], p.message.replace(/network\.wires\[(\d+)\]/g, (_m, k: string) => `network.wires[${at[Number(k)] ?? k}]`))
  const bad = new Set(problems.map(p => p.index))
  const good = parsed.filter((_, i) => !bad.has(i))
  const goodAt = at.filter((_, i) => !bad.has(i))
  for (const p of crossSiteProblems(ctx, good)) report(['network', 'wires', goodAt[p.index] ?? 0], p.message)
  good.forEach((w, i) => {
    for (const e of [w.a, w.b]) {
      const nic = ins.vms[e.component]?.nics.find(n => n.name === e.port)
      if (nic !== undefined && nic.address === undefined) {
        report(['network', 'wires', goodAt[i] ?? 0], `${formatWireEnd(e)} is on the virtual network but has no address; supercloud allocates addresses only on site networks, so give the nic an address`)
      }
    }
  })
  network.wires = parsed
  return network
}

function checkVmMemory (bytes: number, at: SpecPath, report: Report): void {
  if (bytes === 0) report(at, 'must be above 0')
  else if (bytes % MIB !== 0) report(at, `${formatBytes(bytes)} is not a whole number of MiB; QEMU sizes guest memory in MiB`)
}
