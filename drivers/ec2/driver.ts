/**
 * The `ec2` cloud driver: hosts are EC2 instances launched from a stock Debian/Ubuntu AMI
 * with the host bootstrap as user-data (drivers/host-bootstrap/cloud-init.ts). Per supercloud and
 * region: one key pair (the supercloud's public key) and one security group (SSH from the
 * operator only; VXLAN, extender and migration ports only from the group itself). Every
 * resource carries the tags supercloud=<name>, supercloud:prefix=<prefix> (and
 * supercloud:host=<host> on instances), so `down` finds exactly what `up` made, even
 * instances whose ids were never recorded. docs/ec2.md.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DeleteKeyPairCommand, DeleteSecurityGroupCommand,
  DescribeImagesCommand, DescribeInstancesCommand, DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, DescribeSubnetsCommand,
  EC2Client, ImportKeyPairCommand, RevokeSecurityGroupIngressCommand, RunInstancesCommand, TerminateInstancesCommand,
  type Instance, type RunInstancesCommandInput, type SecurityGroup, type TagSpecification, type _InstanceType
} from '@aws-sdk/client-ec2'
import type { CloudDriver, DriverContext, HostHealth, HostRecord, SshEndpoint } from '../cloud.ts'
import type { Ec2HostOptions, HostSpec } from '../../core/spec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { CancelledError, throwIfAborted } from '../../core/errors.ts'
import { SshConnection, shq } from '../../core/ssh.ts'
import { HOST_GUEST_BRIDGE, HOST_REPORT_FILE, ec2UserData, hostStateDir, parseHostReport, type HostReport } from '../host-bootstrap/cloud-init.ts'
import { Ec2Error, awsErrorCode, mapEc2Error } from './errors.ts'
import {
  TAG_HOST, desiredIngress, ec2NetworkName, hostOptions, ingressChanges, normalizeCidr, ownInstanceFilters, ownTags, parseCheckIp, resourceName, type Ec2Identity
} from './plan.ts'

export { spotInterruptionEvent, SPOT_NOTICE_COMMAND, type SpotInterruptionEvent } from './plan.ts'
export { Ec2Error } from './errors.ts'

export const DEFAULT_CHECKIP_URL = 'https://checkip.amazonaws.com/'

export interface Ec2DriverOptions {
  /** EC2 endpoint for every region (tests); a host's ec2.endpoint wins; else env SUPERCLOUD_EC2_ENDPOINT. */
  endpoint?: string
  /** Makes the client of a region; default `new EC2Client({ region, endpoint, maxAttempts })` with the default credential chain. */
  clientFactory?: (region: string, endpoint: string | undefined) => EC2Client
  /** SDK attempts per request (throttling retried with the SDK's backoff). Default 5. */
  maxAttempts?: number
  /** How long an instance may take to answer SSH once running. Default 5 min. */
  reachTimeoutMs?: number
  /** How long the user-data bootstrap may take once SSH answers (package installs). Default 20 min. */
  bootstrapTimeoutMs?: number
  /** How long to wait for running / terminated states. Default 10 min. */
  stateTimeoutMs?: number
  /** Poll interval of the waiters. Default 2 s. */
  pollMs?: number
  /** Where to ask for the operator's public address (sshFrom default). Default env SUPERCLOUD_CHECKIP_URL, else checkip.amazonaws.com. */
  checkIpUrl?: string
  /**
   * Reach the instances' public addresses from inside this network namespace (SSH through
   * `ip netns exec NS socat`): for a machine whose way to those addresses is a namespace,
   * like the fake EC2 server's internet. Default env SUPERCLOUD_EC2_SSH_NETNS, else direct.
   */
  sshNetns?: string
}

/** What the driver keeps in HostRecord.driverData. */
export interface Ec2HostData {
  region: string
  endpoint?: string
  instanceId: string
  instanceType: string
  ami: string
  spot: boolean
  publicIp?: string
  privateIp: string
  /** What the bootstrap found: kvm when /dev/kvm exists, else tcg (the Blanket bootstrap still probes). */
  hypervisor: 'kvm' | 'tcg'
  hypervisorReason: string
}

/** Regions (and endpoints) where this supercloud may have resources; written before anything is made there. */
type RegionFile = Record<string, { endpoint?: string }>

const LIVE = new Set(['pending', 'running', 'stopping', 'stopped'])

function regionFile (ctx: DriverContext): string {
  return join(ctx.dir, 'ec2', 'regions.json')
}

async function readRegions (ctx: DriverContext): Promise<RegionFile> {
  try { return JSON.parse(await readFile(regionFile(ctx), 'utf8')) as RegionFile } catch { return {} }
}

async function sleep (ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  throwIfAborted(signal, what)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(new CancelledError(what)) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

function tagSpec (type: TagSpecification['ResourceType'], id: Ec2Identity, host?: string): TagSpecification {
  return { ResourceType: type, Tags: ownTags(id, host) }
}

export function createEc2Driver (dopts: Ec2DriverOptions = {}): CloudDriver {
  const clients = new Map<string, EC2Client>()
  const regionLocks = new Map<string, Promise<unknown>>()
  const pollMs = dopts.pollMs ?? 2000
  const envNetns = process.env.SUPERCLOUD_EC2_SSH_NETNS
  const sshNetns = dopts.sshNetns ?? (envNetns !== undefined && envNetns !== '' ? envNetns : undefined)
  if (sshNetns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(sshNetns)) throw new Ec2Error('SC_EC2_SPEC', `SSH namespace '${sshNetns}' is not a namespace name`)

  const endpointFor = (o: { endpoint?: string } | undefined): string | undefined =>
    o?.endpoint ?? dopts.endpoint ?? (process.env.SUPERCLOUD_EC2_ENDPOINT !== undefined && process.env.SUPERCLOUD_EC2_ENDPOINT !== '' ? process.env.SUPERCLOUD_EC2_ENDPOINT : undefined)

  const client = (region: string, endpoint: string | undefined): EC2Client => {
    const key = `${region} ${endpoint ?? ''}`
    let c = clients.get(key)
    if (c === undefined) {
      c = dopts.clientFactory?.(region, endpoint) ??
        new EC2Client({ region, maxAttempts: dopts.maxAttempts ?? 5, ...(endpoint !== undefined ? { endpoint } : {}) })
      clients.set(key, c)
    }
    return c
  }

  /** Sends a command; SDK errors become typed errors. */
  async function call<T> (c: EC2Client, region: string, doing: string, fn: (c: EC2Client) => Promise<T>, ami?: string): Promise<T> {
    try {
      return await fn(c)
    } catch (err) {
      throw mapEc2Error(err, ami !== undefined ? { region, doing, ami } : { region, doing })
    }
  }

  async function withRegionLock<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = regionLocks.get(key) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    regionLocks.set(key, next.catch(() => undefined))
    return await next
  }

  async function rememberRegion (ctx: DriverContext, region: string, endpoint: string | undefined): Promise<void> {
    await withRegionLock(`file ${ctx.dir}`, async () => {
      const all = await readRegions(ctx)
      if (region in all && all[region]?.endpoint === endpoint) return
      all[region] = endpoint !== undefined ? { endpoint } : {}
      await mkdir(join(ctx.dir, 'ec2'), { recursive: true })
      await writeFile(regionFile(ctx), JSON.stringify(all, null, 2) + '\n')
    })
  }

  async function forgetRegion (ctx: DriverContext, region: string): Promise<void> {
    await withRegionLock(`file ${ctx.dir}`, async () => {
      const all = await readRegions(ctx)
      delete all[region]
      if (Object.keys(all).length === 0) await rm(join(ctx.dir, 'ec2'), { recursive: true, force: true })
      else await writeFile(regionFile(ctx), JSON.stringify(all, null, 2) + '\n')
    })
  }

  /** ec2 hosts of the context by region. */
  function specsByRegion (ctx: DriverContext): Map<string, Ec2HostOptions[]> {
    const m = new Map<string, Ec2HostOptions[]>()
    for (const h of Object.values(ctx.hosts ?? {})) {
      if (h.driver !== 'ec2' || h.ec2 === undefined) continue
      m.set(h.ec2.region, [...(m.get(h.ec2.region) ?? []), h.ec2])
    }
    return m
  }

  /** All regions (with endpoint) where this supercloud may have resources. */
  async function knownRegions (ctx: DriverContext): Promise<Map<string, string | undefined>> {
    const out = new Map<string, string | undefined>()
    for (const [r, v] of Object.entries(await readRegions(ctx))) out.set(r, v.endpoint ?? endpointFor(undefined))
    for (const [r, specs] of specsByRegion(ctx)) if (!out.has(r)) out.set(r, endpointFor(specs[0]))
    return out
  }

  async function operatorCidr (): Promise<string> {
    const url = dopts.checkIpUrl ?? (process.env.SUPERCLOUD_CHECKIP_URL !== undefined && process.env.SUPERCLOUD_CHECKIP_URL !== '' ? process.env.SUPERCLOUD_CHECKIP_URL : DEFAULT_CHECKIP_URL)
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
  async function ensureRegion (ctx: DriverContext, region: string, specs: Ec2HostOptions[], opts?: OperationOptions): Promise<{ groupId: string, keyName: string }> {
    const endpoint = endpointFor(specs[0])
    await rememberRegion(ctx, region, endpoint)
    return await withRegionLock(`${ctx.dir} ${region}`, async () => {
      const c = client(region, endpoint)
      const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
      const name = resourceName(id)
      const say = (message: string): void => opts?.onProgress?.({ subject: `network ec2 ${region}`, phase: 'network', message })
      throwIfAborted(opts?.signal, `preparing EC2 region ${region}`)

      // Key pair: the supercloud's public key.
      const keys = await call(c, region, `looking up key pair ${name}`, async c => await c.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [name] }] })))
      if ((keys.KeyPairs ?? []).length === 0) {
        say(`importing key pair ${name}`)
        const material = await readFile(`${ctx.keyPath}.pub`)
        try {
          await c.send(new ImportKeyPairCommand({ KeyName: name, PublicKeyMaterial: material, TagSpecifications: [tagSpec('key-pair', id)] }))
        } catch (err) {
          if (awsErrorCode(err) !== 'InvalidKeyPair.Duplicate') throw mapEc2Error(err, { region, doing: `importing key pair ${name}` })
        }
      }

      // Security group, in the VPC of the hosts' subnet (default VPC otherwise).
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
      let group = await findGroup()
      if (group === undefined) {
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
        group = await findGroup()
      }
      const groupId = group?.GroupId
      if (groupId === undefined) throw new Ec2Error('SC_EC2_API', `security group ${name} in ${region} was created but cannot be found`)

      // Rules: exactly the desired ones.
      const explicit = specs.map(s => s.sshFrom).filter((s): s is string => s !== undefined).map(s => normalizeCidr(s))
      const sshFrom = explicit.length > 0 ? explicit : [await operatorCidr()]
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
      return { groupId, keyName: name }
    })
  }

  async function findInstances (c: EC2Client, region: string, ctx: DriverContext, host?: string): Promise<Instance[]> {
    const out: Instance[] = []
    let token: string | undefined
    do {
      const page = await call(c, region, host !== undefined ? `looking up host ${host}` : 'looking up the supercloud\'s instances', async c =>
        await c.send(new DescribeInstancesCommand({ Filters: ownInstanceFilters({ name: ctx.name, prefix: ctx.prefix }, host), ...(token !== undefined ? { NextToken: token } : {}) })))
      for (const r of page.Reservations ?? []) out.push(...(r.Instances ?? []))
      token = page.NextToken
    } while (token !== undefined)
    return out
  }

  async function describeOne (c: EC2Client, region: string, instanceId: string): Promise<Instance | undefined> {
    try {
      const out = await c.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
      return out.Reservations?.[0]?.Instances?.[0]
    } catch (err) {
      if (awsErrorCode(err) === 'InvalidInstanceID.NotFound') return undefined
      throw mapEc2Error(err, { region, doing: `looking up instance ${instanceId}` })
    }
  }

  async function waitForState (c: EC2Client, region: string, host: string, instanceId: string, want: 'running' | 'terminated', opts?: OperationOptions): Promise<Instance | undefined> {
    const what = want === 'running' ? `starting host ${host}` : `terminating host ${host}`
    const timeout = dopts.stateTimeoutMs ?? 10 * 60000
    const start = Date.now()
    let last = ''
    for (;;) {
      const inst = await describeOne(c, region, instanceId)
      const state = inst?.State?.Name ?? 'terminated'
      if (state !== last) {
        opts?.onProgress?.({ subject: `host ${host}`, phase: want === 'running' ? 'launch' : 'destroy', message: `instance ${instanceId} is ${state}` })
        last = state
      }
      if (state === want) return inst
      if (want === 'running' && (state === 'terminated' || state === 'shutting-down')) {
        const reason = inst?.StateReason?.Message ?? inst?.StateTransitionReason ?? 'no reason given'
        throw new Ec2Error('SC_EC2_INSTANCE', `instance ${instanceId} of host ${host} was terminated while starting: ${reason}`)
      }
      if (Date.now() - start > timeout) throw new Ec2Error('SC_EC2_INSTANCE', `instance ${instanceId} of host ${host} is still ${state} after ${Math.round(timeout / 1000)} s (waiting for ${want})`)
      await sleep(pollMs, opts?.signal, what)
    }
  }

  async function terminate (c: EC2Client, region: string, host: string, ids: string[], opts?: OperationOptions): Promise<void> {
    if (ids.length === 0) return
    opts?.onProgress?.({ subject: `host ${host}`, phase: 'destroy', message: `terminating ${ids.join(', ')}` })
    for (const id of ids) {
      try {
        await c.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
      } catch (err) {
        if (awsErrorCode(err) !== 'InvalidInstanceID.NotFound') throw mapEc2Error(err, { region, doing: `terminating instance ${id} of host ${host}` })
      }
    }
    for (const id of ids) await waitForState(c, region, host, id, 'terminated', opts)
  }

  /** Waits until the host answers SSH and its bootstrap report is there. */
  async function waitReady (record: HostRecord, opts?: OperationOptions): Promise<HostReport> {
    const what = `waiting for host ${record.name}`
    const start = Date.now()
    const reachTimeout = dopts.reachTimeoutMs ?? 5 * 60000
    const bootTimeout = dopts.bootstrapTimeoutMs ?? 20 * 60000
    let reachedAt: number | undefined
    let lastError = ''
    let said = ''
    const say = (phase: string, message: string): void => {
      if (message === said) return
      said = message
      opts?.onProgress?.({ subject: `host ${record.name}`, phase, message })
    }
    for (;;) {
      throwIfAborted(opts?.signal, what)
      try {
        const conn = await SshConnection.connect(record.name, record.ssh, { timeoutMs: 10000, ...(opts?.signal !== undefined ? { signal: opts.signal } : {}) })
        try {
          reachedAt ??= Date.now()
          say('bootstrap', 'SSH answers; waiting for the host bootstrap (user-data) to finish')
          const r = await conn.exec(`cat ${shq(`${record.stateDir}/${HOST_REPORT_FILE}`)}`, { allowFailure: true, timeoutMs: 15000 })
          const report = r.code === 0 ? parseHostReport(r.stdout) : undefined
          if (report !== undefined) return report
        } finally {
          conn.close()
        }
      } catch (err) {
        // Not up yet, root login not enabled yet, a dropped connection: all mean "try again".
        if (err instanceof CancelledError) throw err
        lastError = err instanceof Error ? err.message : String(err)
        say('ssh', `waiting for SSH on ${record.ssh.host}:${record.ssh.port}`)
      }
      if (reachedAt === undefined && Date.now() - start > reachTimeout) {
        throw new Ec2Error('SC_EC2_UNREACHABLE', `host ${record.name} (${(record.driverData as unknown as Ec2HostData).instanceId}) did not answer SSH on ${record.ssh.host}:22 within ${Math.round(reachTimeout / 1000)} s (last: ${lastError}); check that ${record.ssh.host} is reachable from here and the security group's SSH source (ec2.sshFrom) is your address`)
      }
      if (reachedAt !== undefined && Date.now() - reachedAt > bootTimeout) {
        throw new Ec2Error('SC_EC2_UNREACHABLE', `host ${record.name} answers SSH but its bootstrap did not finish within ${Math.round(bootTimeout / 1000)} s; its console output (EC2 console, /var/log/cloud-init-output.log) says why`)
      }
      await sleep(pollMs, opts?.signal, what)
    }
  }

  function recordOf (ctx: DriverContext, spec: HostSpec, o: Ec2HostOptions, inst: Instance, endpoint: string | undefined): HostRecord {
    const privateIp = inst.PrivateIpAddress ?? ''
    const publicIp = inst.PublicIpAddress
    const sshHost = publicIp ?? privateIp
    const ssh: SshEndpoint = { host: sshHost, port: 22, username: o.user ?? 'root', privateKeyPath: ctx.keyPath }
    if (sshNetns !== undefined) ssh.proxyCommand = ['ip', 'netns', 'exec', sshNetns, 'socat', '-', `TCP:${sshHost}:22`]
    const data: Ec2HostData = {
      region: o.region, instanceId: inst.InstanceId ?? '', instanceType: o.instanceType, ami: o.ami, spot: o.spot === true,
      privateIp, hypervisor: 'tcg', hypervisorReason: 'not reported yet'
    }
    if (endpoint !== undefined) data.endpoint = endpoint
    if (publicIp !== undefined) data.publicIp = publicIp
    const record: HostRecord = { name: spec.name, site: spec.site, driver: 'ec2', address: privateIp, ssh, stateDir: hostStateDir(ctx.name, spec.name), guestBridge: HOST_GUEST_BRIDGE, driverData: { ...data } }
    // Instances of one VPC reach each other at their private addresses; anything else at the public one.
    if (publicIp !== undefined) record.reach = { network: ec2NetworkName(endpoint, o.region, inst.VpcId), publicAddress: publicIp }
    return record
  }

  /** Where a record's instance lives: its own data, else the spec, else every known region. */
  async function regionsOfRecord (ctx: DriverContext, record: HostRecord): Promise<Array<[string, string | undefined]>> {
    const d = record.driverData as Partial<Ec2HostData>
    if (d.region !== undefined) return [[d.region, d.endpoint ?? endpointFor(undefined)]]
    const spec = ctx.hosts?.[record.name]?.ec2
    if (spec !== undefined) return [[spec.region, endpointFor(spec)]]
    return [...await knownRegions(ctx)]
  }

  const driver: CloudDriver = {
    name: 'ec2',

    async ensureNetwork (ctx, opts) {
      for (const [region, specs] of specsByRegion(ctx)) await ensureRegion(ctx, region, specs, opts)
    },

    async destroyNetwork (ctx, opts) {
      const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
      const name = resourceName(id)
      for (const [region, endpoint] of await knownRegions(ctx)) {
        const c = client(region, endpoint)
        const say = (message: string): void => opts?.onProgress?.({ subject: `network ec2 ${region}`, phase: 'delete', message })
        // Instances first: a partial `up` may have left some whose ids were never recorded.
        const left = await findInstances(c, region, ctx)
        for (const inst of left) {
          const host = inst.Tags?.find(t => t.Key === TAG_HOST)?.Value ?? inst.InstanceId ?? '?'
          if (inst.InstanceId !== undefined) await terminate(c, region, host, [inst.InstanceId], opts)
        }
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
              if (code !== 'DependencyViolation' || Date.now() - start > (dopts.stateTimeoutMs ?? 10 * 60000)) throw mapEc2Error(err, { region, doing: `deleting security group ${g.GroupId}` })
              await sleep(pollMs, opts?.signal, `deleting security group ${g.GroupId}`)
            }
          }
        }
        const keys = await call(c, region, `looking up key pair ${name}`, async c => await c.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'key-name', Values: [name] }] })))
        for (const k of keys.KeyPairs ?? []) {
          // Only ours: the name carries the prefix, the tag says so.
          if (!(k.Tags ?? []).some(t => t.Key === 'supercloud:prefix' && t.Value === ctx.prefix)) continue
          say(`deleting key pair ${name}`)
          await call(c, region, `deleting key pair ${name}`, async c => await c.send(new DeleteKeyPairCommand({ KeyName: name })))
        }
        await forgetRegion(ctx, region)
      }
    },

    async createHost (ctx, spec, opts) {
      const o = hostOptions(spec)
      const subject = `host ${spec.name}`
      const say = (phase: string, message: string): void => opts?.onProgress?.({ subject, phase, message })
      const endpoint = endpointFor(o)
      const region = o.region
      const c = client(region, endpoint)
      const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
      const regionSpecs = [...(specsByRegion(ctx).get(region) ?? []), o]
      await rememberRegion(ctx, region, endpoint)

      // Adopt the instance of an earlier (interrupted) run.
      let inst = (await findInstances(c, region, ctx, spec.name)).find(i => LIVE.has(i.State?.Name ?? ''))
      if (inst === undefined) {
        say('image', `checking AMI ${o.ami} in ${region}`)
        await call(c, region, `looking up AMI ${o.ami}`, async c => await c.send(new DescribeImagesCommand({ ImageIds: [o.ami] })), o.ami)
          .then(out => { if ((out.Images ?? []).length === 0) throw mapEc2Error(Object.assign(new Error('no such image'), { name: 'InvalidAMIID.NotFound', $metadata: {} }), { region, doing: 'checking the AMI', ami: o.ami }) })
        const net = await ensureRegion(ctx, region, regionSpecs, opts)
        throwIfAborted(opts?.signal, `creating host ${spec.name}`)
        const publicKey = (await readFile(`${ctx.keyPath}.pub`, 'utf8')).trim()
        const input: RunInstancesCommandInput = {
          ImageId: o.ami,
          InstanceType: o.instanceType as _InstanceType,
          MinCount: 1,
          MaxCount: 1,
          KeyName: net.keyName,
          SecurityGroupIds: [net.groupId],
          UserData: ec2UserData({ supercloud: ctx.name, host: spec.name, stateDir: hostStateDir(ctx.name, spec.name), publicKey }),
          InstanceInitiatedShutdownBehavior: 'terminate',
          TagSpecifications: [tagSpec('instance', id, spec.name), tagSpec('volume', id, spec.name), tagSpec('network-interface', id, spec.name),
            ...(o.spot === true ? [tagSpec('spot-instances-request', id, spec.name)] : [])],
          ...(o.subnetId !== undefined ? { SubnetId: o.subnetId } : {}),
          ...(o.spot === true ? { InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } } } : {})
        }
        say('launch', `launching ${o.spot === true ? 'spot ' : ''}${o.instanceType} from ${o.ami} in ${region}`)
        const out = await call(c, region, `launching host ${spec.name}`, async c => await c.send(new RunInstancesCommand(input)), o.ami)
        inst = out.Instances?.[0]
      } else {
        say('adopt', `adopting instance ${inst.InstanceId ?? ''} (${inst.State?.Name ?? ''})`)
      }
      const instanceId = inst?.InstanceId
      if (instanceId === undefined) throw new Ec2Error('SC_EC2_API', `RunInstances for host ${spec.name} returned no instance`)
      const running = await waitForState(c, region, spec.name, instanceId, 'running', opts)
      if (running === undefined || (running.PublicIpAddress === undefined && running.PrivateIpAddress === undefined)) {
        throw new Ec2Error('SC_EC2_INSTANCE', `instance ${instanceId} of host ${spec.name} runs without an IP address`)
      }
      const record = recordOf(ctx, spec, o, running, endpoint)
      let report: HostReport
      try {
        report = await waitReady(record, opts)
      } catch (err) {
        if (err instanceof Ec2Error && err.code === 'SC_EC2_UNREACHABLE') {
          // Never leave an instance nobody can use running (and billing).
          say('destroy', `terminating unreachable instance ${instanceId}`)
          await terminate(c, region, spec.name, [instanceId], opts).catch(() => {})
        }
        throw err
      }
      const data = record.driverData as unknown as Ec2HostData
      data.hypervisor = report.hypervisor
      data.hypervisorReason = report.reason
      say('ready', `instance ${instanceId} at ${record.ssh.host}, hypervisor ${report.hypervisor} (${report.reason})`)
      return record
    },

    async describeHost (ctx, record): Promise<HostHealth> {
      const d = record.driverData as Partial<Ec2HostData>
      for (const [region, endpoint] of await regionsOfRecord(ctx, record)) {
        const c = client(region, endpoint)
        const inst = d.instanceId !== undefined && d.region === region
          ? await describeOne(c, region, d.instanceId)
          : (await findInstances(c, region, ctx, record.name))[0]
        const state = inst?.State?.Name
        if (state === 'running') return 'running'
        if (state === 'pending' || state === 'stopping' || state === 'stopped') return 'unreachable'
      }
      return 'gone'
    },

    async destroyHost (ctx, record, opts) {
      const d = record.driverData as Partial<Ec2HostData>
      for (const [region, endpoint] of await regionsOfRecord(ctx, record)) {
        const c = client(region, endpoint)
        // By id, and by tag: a partial create may have made an instance whose id was never recorded.
        const ids = new Set<string>()
        if (d.instanceId !== undefined && d.region === region) {
          const inst = await describeOne(c, region, d.instanceId)
          if (inst !== undefined && inst.State?.Name !== 'terminated') ids.add(d.instanceId)
        }
        for (const i of await findInstances(c, region, ctx, record.name)) if (i.InstanceId !== undefined) ids.add(i.InstanceId)
        await terminate(c, region, record.name, [...ids], opts)
      }
    }
  }
  return driver
}
