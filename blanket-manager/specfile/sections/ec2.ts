/** `hosts.<name>.ec2` → Ec2HostOptions; the same value rules as the driver (drivers/ec2/plan.ts hostOptions). */
import type { Ec2HostOptions, Ec2SpotPool } from '../../../core/spec.ts'
import { formatCidr, formatIpv4, networkOf, parseCidr, parseIpv4 } from '../../../core/ipv4.ts'
import type { SpecPath } from '../locate.ts'
import { str, type Obj, type Report } from '../raw.ts'
import { sshUserProblem } from '../../../core/ssh-values.ts'

export function normalizeEc2 (e: Obj, at: SpecPath, report: Report): Ec2HostOptions {
  const o: Ec2HostOptions = { region: str(e.region) ?? '', ami: str(e.ami) ?? '', instanceType: str(e.instanceType) ?? '' }
  const check = (key: string, ok: boolean, message: string): void => { if (!ok) report([...at, key], message) }
  if (o.region !== '') check('region', /^[a-z]{2}(-[a-z]+)+-\d+$/.test(o.region), `'${o.region}' is not an AWS region name (e.g. eu-west-1)`)
  if (o.ami !== '') check('ami', /^ami-[0-9a-f]{8}([0-9a-f]{9})?$/.test(o.ami), `'${o.ami}' is not an AMI id (ami- and 8 or 17 hex digits, e.g. ami-0123456789abcdef0)`)
  if (o.instanceType !== '') check('instanceType', /^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$/.test(o.instanceType), `'${o.instanceType}' is not an instance type (e.g. m5.large)`)
  normalizeSpot(e.spot, [...at, 'spot'], report, o)
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
    const problem = sshUserProblem(user)
    if (problem !== undefined) report([...at, 'user'], problem)
    o.user = user
  }
  return o
}

const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$/
const SPOT_KEYS = ['maxPrice', 'instanceTypes']

function show (v: unknown): string { return typeof v === 'string' ? `'${v}'` : JSON.stringify(v) ?? String(v) }

/** `spot: true|false`, or the pool `spot: { maxPrice: 0.05, instanceTypes: [t3.small, t3a.small] }` (spot implied). */
function normalizeSpot (v: unknown, at: SpecPath, report: Report, o: Ec2HostOptions): void {
  if (v === undefined || v === null) return
  if (typeof v === 'boolean') { o.spot = v; return }
  if (typeof v !== 'object' || Array.isArray(v)) { report(at, `expected true or false, or a spot pool like { maxPrice: 0.05, instanceTypes: [t3.small, t3a.small] }, got ${show(v)}`); return }
  const e = v as Obj
  for (const k of Object.keys(e)) if (!SPOT_KEYS.includes(k)) report([...at, k], `unknown key '${k}'; known keys: ${SPOT_KEYS.join(', ')}`, 'key')
  const pool: Ec2SpotPool = { instanceTypes: [] }
  if (e.maxPrice !== undefined) {
    const n = typeof e.maxPrice === 'number' ? e.maxPrice : typeof e.maxPrice === 'string' && /^\$?\d+(\.\d+)?$/.test(e.maxPrice.trim()) ? Number(e.maxPrice.trim().replace(/^\$/, '')) : Number.NaN
    if (!Number.isFinite(n) || n <= 0) report([...at, 'maxPrice'], `expected a price in USD per hour above 0 like 0.05, got ${show(e.maxPrice)}`)
    else pool.maxPrice = n
  }
  if (e.instanceTypes !== undefined) {
    if (!Array.isArray(e.instanceTypes)) report([...at, 'instanceTypes'], `expected a list of instance types like [t3.small, t3a.small], got ${show(e.instanceTypes)}`)
    else {
      e.instanceTypes.forEach((it, i) => {
        if (typeof it !== 'string' || !INSTANCE_TYPE.test(it)) report([...at, 'instanceTypes', i], `${show(it)} is not an instance type (e.g. m5.large)`)
        else if (it === o.instanceType) report([...at, 'instanceTypes', i], `${it} is the host's own instanceType; list the other types a replacement may be`)
        else if (pool.instanceTypes.includes(it)) report([...at, 'instanceTypes', i], `${it} is listed twice`)
        else pool.instanceTypes.push(it)
      })
    }
  }
  o.spot = true
  o.spotPool = pool
}
