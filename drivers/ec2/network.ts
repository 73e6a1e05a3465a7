/**
 * The EC2 driver's per-region network: one key pair (the supercloud's public key) and one
 * security group (SSH from the operator only; VXLAN, extender and migration ports only from the
 * group itself), made idempotently by ensureRegion and removed by destroyRegion.
 */
import { readFile } from 'node:fs/promises'
import {
  AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DeleteKeyPairCommand, DeleteSecurityGroupCommand,
  DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, DescribeSubnetsCommand, ImportKeyPairCommand, RevokeSecurityGroupIngressCommand,
  type EC2Client, type SecurityGroup
} from '@aws-sdk/client-ec2'
import type { DriverContext } from '../cloud.ts'
import type { Ec2HostOptions } from '../../core/spec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { throwIfAborted } from '../../core/errors.ts'
import { Ec2Error, awsErrorCode, mapEc2Error } from './errors.ts'
import { desiredIngress, ingressChanges, normalizeCidr, parseCheckIp, resourceName, type Ec2Identity } from './plan.ts'
import { call, clientFor, endpointFor, sleep, tagSpec, withRegionLock, type Ec2Env } from './client.ts'
import { forgetRegion, rememberRegion } from './regions.ts'

export const DEFAULT_CHECKIP_URL = 'https://checkip.amazonaws.com/'

/** One region's work: its client, our identity and resource name, and progress. */
interface RegionJob {
  c: EC2Client
  region: string
  ctx: DriverContext
  id: Ec2Identity
  name: string
  say: (message: string) => void
}

async function operatorCidr (env: Ec2Env): Promise<string> {
  const url = env.opts.checkIpUrl ?? (process.env.SUPERCLOUD_CHECKIP_URL !== undefined && process.env.SUPERCLOUD_CHECKIP_URL !== '' ? process.env.SUPERCLOUD_CHECKIP_URL : DEFAULT_CHECKIP_URL)
  let text = ''
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10000) })
    text = await res.text()
  } catch (err) {
    throw new Ec2Error('SC_EC2_SSH_FROM', `cannot tell this machine's public address (asked ${url}): ${err instanceof Error ? err.message : String(err)}; set ec2.sshFrom on the hosts to the address or CIDR you connect from`, { cause: err })
  }
  const ip = parseCheckIp(text)
  if (ip === undefined) throw new Ec2Error('SC_EC2_SSH_FROM', `${url} did not answer with an IPv4 address; set ec2.sshFrom on the hosts`)
  return `${ip}/32`
}

/** Key pair and security group of one region; returns their names/ids. Idempotent, serialised per region. */
export async function ensureRegion (env: Ec2Env, ctx: DriverContext, region: string, specs: Ec2HostOptions[], opts?: OperationOptions): Promise<{ groupId: string, keyName: string }> {
  const endpoint = endpointFor(env, specs[0])
  await rememberRegion(env, ctx, region, endpoint)
  return await withRegionLock(env, `${ctx.dir} ${region}`, async () => {
    const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
    const name = resourceName(id)
    const job: RegionJob = {
      c: clientFor(env, region, endpoint), region, ctx, id, name,
      say: message => opts?.onProgress?.({ subject: `network ec2 ${region}`, phase: 'network', message })
    }
    throwIfAborted(opts?.signal, `preparing EC2 region ${region}`)
    await ensureKeyPair(job)
    const group = await ensureGroup(job, specs)
    const groupId = group?.GroupId
    if (groupId === undefined) throw new Ec2Error('SC_EC2_API', `security group ${name} in ${region} was created but cannot be found`)
    await ensureRules(env, job, specs, group, groupId)
    return { groupId, keyName: name }
  })
}

/** Key pair: the supercloud's public key. */
async function ensureKeyPair ({ c, region, ctx, id, name, say }: RegionJob): Promise<void> {
  const keys = await call(c, region, `looking up key pair ${name}`, async c => await c.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [name] }] })))
  if ((keys.KeyPairs ?? []).length > 0) return
  say(`importing key pair ${name}`)
  const material = await readFile(`${ctx.keyPath}.pub`)
  try {
    await c.send(new ImportKeyPairCommand({ KeyName: name, PublicKeyMaterial: material, TagSpecifications: [tagSpec('key-pair', id)] }))
  } catch (err) {
    if (awsErrorCode(err) !== 'InvalidKeyPair.Duplicate') throw mapEc2Error(err, { region, doing: `importing key pair ${name}` })
  }
}

/** Security group, in the VPC of the hosts' subnet (default VPC otherwise). */
async function ensureGroup ({ c, region, ctx, id, name, say }: RegionJob, specs: Ec2HostOptions[]): Promise<SecurityGroup | undefined> {
  const subnets = [...new Set(specs.map(s => s.subnetId).filter((s): s is string => s !== undefined))]
  let vpcId: string | undefined
  if (subnets.length > 0) {
    const out = await call(c, region, `looking up subnets ${subnets.join(', ')}`, async c => await c.send(new DescribeSubnetsCommand({ SubnetIds: subnets })))
    const vpcs = [...new Set((out.Subnets ?? []).map(s => s.VpcId))]
    if (vpcs.length !== 1 || vpcs[0] === undefined) throw new Ec2Error('SC_EC2_SPEC', `the ec2 hosts of region ${region} must use subnets of one VPC (found ${vpcs.join(', ')})`)
    vpcId = vpcs[0]
  }
  const findGroup = async (): Promise<SecurityGroup | undefined> => {
    const filters = [{ Name: 'group-name', Values: [name] }, { Name: 'tag:supercloud:prefix', Values: [ctx.prefix] }]
    if (vpcId !== undefined) filters.push({ Name: 'vpc-id', Values: [vpcId] })
    const out = await call(c, region, `looking up security group ${name}`, async c => await c.send(new DescribeSecurityGroupsCommand({ Filters: filters })))
    return out.SecurityGroups?.[0]
  }
  const group = await findGroup()
  if (group !== undefined) return group
  say(`creating security group ${name}`)
  try {
    await c.send(new CreateSecurityGroupCommand({
      GroupName: name,
      Description: `supercloud ${ctx.name}: SSH from the operator, VXLAN/extender/migration between its hosts`,
      TagSpecifications: [tagSpec('security-group', id)],
      ...(vpcId !== undefined ? { VpcId: vpcId } : {})
    }))
  } catch (err) {
    if (awsErrorCode(err) !== 'InvalidGroup.Duplicate') throw mapEc2Error(err, { region, doing: `creating security group ${name}` })
  }
  return await findGroup()
}

/** Rules: exactly the desired ones. */
async function ensureRules (env: Ec2Env, { c, region, name, say }: RegionJob, specs: Ec2HostOptions[], group: SecurityGroup | undefined, groupId: string): Promise<void> {
  const explicit = specs.map(s => s.sshFrom).filter((s): s is string => s !== undefined).map(s => normalizeCidr(s))
  const sshFrom = explicit.length > 0 ? explicit : [await operatorCidr(env)]
  const change = ingressChanges(group?.IpPermissions ?? [], desiredIngress(sshFrom, groupId))
  if (change.authorize.length > 0) {
    say(`allowing SSH and extenders from ${sshFrom.join(', ')}; VXLAN, extender and migration ports from ${groupId}`)
    try {
      await c.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: change.authorize }))
    } catch (err) {
      if (awsErrorCode(err) !== 'InvalidPermission.Duplicate') throw mapEc2Error(err, { region, doing: `setting the rules of ${name}` })
      for (const p of change.authorize) {
        await c.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: [p] })).catch((e: unknown) => {
          if (awsErrorCode(e) !== 'InvalidPermission.Duplicate') throw mapEc2Error(e, { region, doing: `setting the rules of ${name}` })
        })
      }
    }
  }
  if (change.revoke.length > 0) {
    say(`removing ${change.revoke.length} rule(s) no longer wanted from ${name}`)
    await call(c, region, `removing rules from ${name}`, async c => await c.send(new RevokeSecurityGroupIngressCommand({ GroupId: groupId, IpPermissions: change.revoke })))
  }
}

/** Deletes the security group and key pair of one region (its instances must be gone) and forgets the region. */
export async function destroyRegion (env: Ec2Env, ctx: DriverContext, region: string, c: EC2Client, opts?: OperationOptions): Promise<void> {
  const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
  const name = resourceName(id)
  const job: RegionJob = { c, region, ctx, id, name, say: message => opts?.onProgress?.({ subject: `network ec2 ${region}`, phase: 'delete', message }) }
  await deleteGroups(env, job, opts)
  await deleteKeyPairs(job)
  await forgetRegion(env, ctx, region)
}

async function deleteGroups (env: Ec2Env, { c, region, ctx, name, say }: RegionJob, opts?: OperationOptions): Promise<void> {
  const groups = await call(c, region, `looking up security group ${name}`, async c => await c.send(new DescribeSecurityGroupsCommand({
    Filters: [{ Name: 'group-name', Values: [name] }, { Name: 'tag:supercloud:prefix', Values: [ctx.prefix] }]
  })))
  for (const g of groups.SecurityGroups ?? []) {
    if (g.GroupId === undefined) continue
    say(`deleting security group ${g.GroupId}`)
    const start = Date.now()
    for (;;) {
      try {
        await c.send(new DeleteSecurityGroupCommand({ GroupId: g.GroupId }))
        break
      } catch (err) {
        const code = awsErrorCode(err)
        if (code === 'InvalidGroup.NotFound') break
        // Network interfaces of terminated instances take a little while to go.
        if (code !== 'DependencyViolation' || Date.now() - start > (env.opts.stateTimeoutMs ?? 10 * 60000)) throw mapEc2Error(err, { region, doing: `deleting security group ${g.GroupId}` })
        await sleep(env.pollMs, opts?.signal, `deleting security group ${g.GroupId}`)
      }
    }
  }
}

async function deleteKeyPairs ({ c, region, ctx, name, say }: RegionJob): Promise<void> {
  const keys = await call(c, region, `looking up key pair ${name}`, async c => await c.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [name] }] })))
  for (const k of keys.KeyPairs ?? []) {
    // Only ours: the name carries the prefix, the tag says so.
    if (!(k.Tags ?? []).some(t => t.Key === 'supercloud:prefix' && t.Value === ctx.prefix)) continue
    say(`deleting key pair ${name}`)
    await call(c, region, `deleting key pair ${name}`, async c => await c.send(new DeleteKeyPairCommand({ KeyName: name })))
  }
}
