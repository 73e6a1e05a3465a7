/**
 * Pure parts of the ec2 driver: resource names, tags, filters, the security group's
 * rules and how to converge them, host option checks, and spot interruption notices.
 */
import type { Filter, IpPermission, Tag } from '@aws-sdk/client-ec2'
import type { Ec2HostOptions, HostSpec } from '../../core/spec.ts'
import { Ec2Error } from './errors.ts'

/** UDP port of the VirtualWire data plane (VXLAN wire format). */
export const VXLAN_PORT = 4789
/** UDP ports of the site extenders (OpenVPN): extender i of a supercloud listens on 1194 + i (at most 64). */
export const EXTENDER_PORTS: [number, number] = [1194, 1257]
/** TCP ports of live migration streams. */
export const MIGRATION_PORTS: [number, number] = [49152, 49215]

export const TAG_SUPERCLOUD = 'supercloud'
export const TAG_PREFIX = 'supercloud:prefix'
export const TAG_HOST = 'supercloud:host'

export interface Ec2Identity { name: string, prefix: string }

/** Key pair and security group name of a supercloud (one of each per region). */
export function resourceName (id: Ec2Identity): string {
  return `supercloud-${id.name}-${id.prefix}`
}

/** Tags on everything the driver makes: supercloud, prefix, and the host for host resources. */
export function ownTags (id: Ec2Identity, host?: string): Tag[] {
  const t: Tag[] = [{ Key: TAG_SUPERCLOUD, Value: id.name }, { Key: TAG_PREFIX, Value: id.prefix }, { Key: 'Name', Value: host !== undefined ? `${resourceName(id)}-${host}` : resourceName(id) }]
  if (host !== undefined) t.push({ Key: TAG_HOST, Value: host })
  return t
}

/** DescribeInstances filters for this supercloud's live instances (of one host when given). */
export function ownInstanceFilters (id: Ec2Identity, host?: string): Filter[] {
  const f: Filter[] = [
    { Name: `tag:${TAG_SUPERCLOUD}`, Values: [id.name] },
    { Name: `tag:${TAG_PREFIX}`, Values: [id.prefix] },
    { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped', 'shutting-down'] }
  ]
  if (host !== undefined) f.push({ Name: `tag:${TAG_HOST}`, Values: [host] })
  return f
}

/** The network name of an instance in HostRecord.reach: instances of one VPC (one endpoint, region, VPC) reach each other privately. */
export function ec2NetworkName (endpoint: string | undefined, region: string, vpcId: string | undefined): string {
  return `ec2 ${endpoint ?? 'aws'} ${region} ${vpcId ?? 'default-vpc'}`
}

/** Accepts `a.b.c.d` (becomes /32) or `a.b.c.d/n`; throws SC_EC2_SPEC otherwise. */
export function normalizeCidr (s: string, what = 'sshFrom'): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(s.trim())
  if (m === null || m.slice(1, 5).some(o => Number(o) > 255) || (m[5] !== undefined && Number(m[5]) > 32)) {
    throw new Ec2Error('SC_EC2_SPEC', `${what} '${s}' is not an IPv4 address or CIDR`)
  }
  return `${m.slice(1, 5).join('.')}/${m[5] ?? '32'}`
}

/**
 * The rules of a supercloud's security group. SSH from the operator's address; the
 * extender ports from the supercloud's own hosts: the group itself, and the operator's
 * address too, which is where the gateways of the operator's other sites (local sites on
 * the operator's machine, servers behind the same NAT) come from over the internet.
 * VXLAN and migration only from the group: between sites they ride inside the extenders.
 */
export function desiredIngress (sshFrom: string[], groupId: string): IpPermission[] {
  const self = [{ GroupId: groupId }]
  const operator = [...new Set(sshFrom)].sort().map(c => ({ CidrIp: c }))
  return [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: operator },
    { IpProtocol: 'udp', FromPort: VXLAN_PORT, ToPort: VXLAN_PORT, UserIdGroupPairs: self },
    { IpProtocol: 'udp', FromPort: EXTENDER_PORTS[0], ToPort: EXTENDER_PORTS[1], IpRanges: operator, UserIdGroupPairs: self },
    { IpProtocol: 'tcp', FromPort: MIGRATION_PORTS[0], ToPort: MIGRATION_PORTS[1], UserIdGroupPairs: self }
  ]
}

/** One source of one rule: the unit EC2 authorizes and revokes. */
interface RuleKey { proto: string, from: number, to: number, cidr?: string, group?: string }

function flatten (perms: IpPermission[]): RuleKey[] {
  const out: RuleKey[] = []
  for (const p of perms) {
    const base = { proto: p.IpProtocol ?? '', from: p.FromPort ?? -1, to: p.ToPort ?? -1 }
    for (const r of p.IpRanges ?? []) if (r.CidrIp !== undefined) out.push({ ...base, cidr: r.CidrIp })
    for (const g of p.UserIdGroupPairs ?? []) if (g.GroupId !== undefined) out.push({ ...base, group: g.GroupId })
  }
  return out
}

function keyOf (r: RuleKey): string {
  return `${r.proto}/${r.from}-${r.to}/${r.cidr ?? ''}/${r.group ?? ''}`
}

function toPermission (r: RuleKey): IpPermission {
  const p: IpPermission = { IpProtocol: r.proto, FromPort: r.from, ToPort: r.to }
  if (r.cidr !== undefined) p.IpRanges = [{ CidrIp: r.cidr }]
  if (r.group !== undefined) p.UserIdGroupPairs = [{ GroupId: r.group }]
  return p
}

/** What to authorize and revoke so the group has exactly `desired` (IPv4 rules). */
export function ingressChanges (existing: IpPermission[], desired: IpPermission[]): { authorize: IpPermission[], revoke: IpPermission[] } {
  const have = new Map(flatten(existing).map(r => [keyOf(r), r]))
  const want = new Map(flatten(desired).map(r => [keyOf(r), r]))
  return {
    authorize: [...want].filter(([k]) => !have.has(k)).map(([, r]) => toPermission(r)),
    revoke: [...have].filter(([k]) => !want.has(k)).map(([, r]) => toPermission(r))
  }
}

/** The ec2 options of a host spec, checked. */
export function hostOptions (spec: HostSpec): Ec2HostOptions {
  const o = spec.ec2
  const bad = (detail: string): Ec2Error => new Ec2Error('SC_EC2_SPEC', `host ${spec.name}: ${detail}`)
  if (o === undefined) throw bad('driver ec2 needs an ec2: section (region, ami, instanceType)')
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(o.region)) throw bad(`ec2.region '${o.region}' is not an AWS region name (e.g. eu-west-1)`)
  if (!/^ami-[0-9a-f]{8,17}$/.test(o.ami)) throw bad(`ec2.ami '${o.ami}' is not an AMI id (ami- and 8 or 17 hex digits)`)
  if (!/^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$/.test(o.instanceType)) throw bad(`ec2.instanceType '${o.instanceType}' is not an instance type (e.g. m5.large)`)
  if (o.subnetId !== undefined && !/^subnet-[0-9a-f]{8,17}$/.test(o.subnetId)) throw bad(`ec2.subnetId '${o.subnetId}' is not a subnet id`)
  if (o.sshFrom !== undefined) normalizeCidr(o.sshFrom, `host ${spec.name}: ec2.sshFrom`)
  if (o.endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(o.endpoint)) throw bad(`ec2.endpoint '${o.endpoint}' is not an http(s) URL`)
  if (o.user !== undefined && !/^[a-z_][a-z0-9_-]*$/.test(o.user)) throw bad(`ec2.user '${o.user}' is not a user name`)
  return o
}

/** Parses the address a checkip service answers with (one IPv4 address). */
export function parseCheckIp (text: string): string | undefined {
  const s = text.trim()
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s) ? s : undefined
}

// ---- spot interruptions ----

/** Shell command that prints the instance's spot interruption notice (IMDSv2), or nothing when there is none. */
export const SPOT_NOTICE_COMMAND = 'T=$(curl -sf -m 2 -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 60") && ' +
  'curl -sf -m 2 -H "X-aws-ec2-metadata-token: $T" http://169.254.169.254/latest/meta-data/spot/instance-action || true'

/** The event a spot interruption notice becomes (published on the event hub once there is one). */
export interface SpotInterruptionEvent {
  type: 'host.interruption'
  host: string
  /** When EC2 will act (ISO 8601, UTC): about two minutes after the notice. */
  at: string
  action: 'terminate' | 'stop' | 'hibernate'
}

/**
 * Turns the instance metadata's `spot/instance-action` document
 * (`{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`) into an event;
 * undefined when the text is empty or not such a notice (no interruption pending).
 */
export function spotInterruptionEvent (host: string, notice: string): SpotInterruptionEvent | undefined {
  if (notice.trim() === '') return undefined
  let j: { action?: unknown, time?: unknown }
  try { j = JSON.parse(notice) as { action?: unknown, time?: unknown } } catch { return undefined }
  if (j.action !== 'terminate' && j.action !== 'stop' && j.action !== 'hibernate') return undefined
  if (typeof j.time !== 'string' || Number.isNaN(Date.parse(j.time))) return undefined
  return { type: 'host.interruption', host, at: new Date(j.time).toISOString(), action: j.action }
}
