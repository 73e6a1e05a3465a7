/**
 * A local server speaking the EC2 Query API (the subset the ec2 driver uses), for tests
 * and CI without AWS. Requests are SigV4-signed form POSTs (checked: known access key,
 * valid signature); answers are EC2's XML documents and error codes. Its instances are
 * real hosts made with the `local` driver: a namespace with sshd on a site subnet per
 * region (their private addresses), and a public address on the server's internet
 * (internet.ts: 1:1 NAT, filtered by the instance's security groups), which this machine
 * reaches from the internet namespace (`sshNetns`) and local-driver sites reach through an
 * uplink (`uplink()`). The key pair's public key is the instance's authorized key, and a
 * user-data that is a shell script runs on the instance.
 *
 * Tests steer it with `inject` (throttling, quota, unreachable instances, missing AMIs)
 * and look at it with `instances()`, `securityGroups()`, `keyPairs()`, `requests`.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { mkdir, rm, writeFile, rmdir } from 'node:fs/promises'
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { join } from 'node:path'
import type { CloudDriver, DriverContext, HostRecord } from '../../cloud.ts'
import { createLocalDriver, ensureSupercloudKey, type LocalHostData } from '../../local/driver.ts'
import { nsRun, run } from '../../local/sh.ts'
import { addVeth, destroyNs, ensureNs, ip, linkExists, sysctl } from '../../local/netns.ts'
import { wanNs } from '../../local/names.ts'
import {
  IGW_LINK, IGW_PEER, INET_BRIDGE, LAN_BRIDGE, edgeRules, gatewayRules, internetPlan, publicAddressOf, uplinkValue, type InternetPlan
} from './internet.ts'
import { hostStateDir } from '../../host-bootstrap/cloud-init.ts'
import {
  EC2_API_VERSION, Ec2ApiError, errorXml, expectedSignature, filters, itemSet, list, obj, parseAuthorization,
  parseQuery, responseXml, statusFor, str, strList, tagSet, tagSpecs, type QueryObject, type XmlNode
} from './protocol.ts'

export const FAKE_ACCESS_KEY_ID = 'AKIASUPERCLOUDTEST01'
export const FAKE_SECRET_ACCESS_KEY = 'supercloud-test-secret-key-not-a-real-one'
/** AMI present in every region of a fresh server. */
export const FAKE_AMI = 'ami-0d5eb1a2c3d4e5f60'

export type InstanceStateName = 'pending' | 'running' | 'shutting-down' | 'terminated'
const STATE_CODES: Record<InstanceStateName, number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48 }

export interface FakeEc2Options {
  /** Prefix of every namespace and process the server makes (`sct` + hex in tests). */
  prefix: string
  /** Working directory (its own key, instance sandboxes and console logs). */
  dir: string
  /** Region → site subnet of its instances. Default us-east-1 198.18.200.0/24, eu-west-1 198.18.201.0/24. */
  regions?: Record<string, string>
  /** Access key id → secret. Default FAKE_ACCESS_KEY_ID. */
  credentials?: Record<string, string>
  /** AMIs present in every region at start. Default [FAKE_AMI]. */
  images?: string[]
  /** Check SigV4 signatures (default true); the access key is always checked. */
  verifySignatures?: boolean
  /** The internet's range (public addresses; default 198.18.232.0/24) and this machine's LAN behind its edge (default 198.18.233.0/24). */
  internet?: string
  lan?: string
}

interface Perm { proto: string, from: number, to: number, cidrs: string[], groups: string[] }
interface Group { id: string, name: string, description: string, vpcId: string, region: string, tags: Record<string, string>, ingress: Perm[] }
interface KeyPair { id: string, name: string, region: string, publicKey: string, fingerprint: string, tags: Record<string, string> }

export interface FakeInstance {
  id: string
  region: string
  reservationId: string
  imageId: string
  instanceType: string
  keyName: string
  groupIds: string[]
  subnetId: string
  az: string
  tags: Record<string, string>
  state: InstanceStateName
  stateReason?: { code: string, message: string }
  privateIp?: string
  publicIp?: string
  launchTime: string
  spot: boolean
  clientToken?: string
  userData?: string
  /** Injected: the instance runs but nothing ever answers on its address. */
  unreachable: boolean
  /** Exit status of the user-data script, when it ran. */
  userDataExit?: number | null
}

interface InstanceRuntime {
  host?: HostRecord
  provisioning?: Promise<void>
  userData?: Promise<void>
}

export interface RequestLogEntry { action: string, region: string, status: number, code?: string }

function hex (n: number): string {
  return randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n)
}

function ipToInt (ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0)
}

/** Whether IPv4 `ip` is inside `cidr`. */
export function cidrContains (cidr: string, ip: string): boolean {
  const [base, lenStr] = cidr.split('/')
  const len = Number(lenStr ?? '32')
  if (base === undefined || !/^\d+\.\d+\.\d+\.\d+$/.test(base) || !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return false
  if (len === 0) return true
  const mask = len >= 32 ? 0xffffffff : (~((1 << (32 - len)) - 1)) >>> 0
  return ((ipToInt(base) & mask) >>> 0) === ((ipToInt(ip) & mask) >>> 0)
}

export class FakeEc2Server {
  readonly opts: FakeEc2Options
  readonly requests: RequestLogEntry[] = []
  private readonly regions: Record<string, string>
  private readonly credentials: Record<string, string>
  private readonly images = new Map<string, Set<string>>()
  private readonly vpcs = new Map<string, { vpcId: string, subnetId: string }>()
  private readonly groups = new Map<string, Group>()
  private readonly keyPairsByRegion = new Map<string, Map<string, KeyPair>>()
  private readonly instancesById = new Map<string, FakeInstance>()
  private readonly runtime = new Map<string, InstanceRuntime>()
  private readonly local: CloudDriver = createLocalDriver()
  private ctx?: DriverContext
  private http?: HttpServer
  /** The internet's addresses (internet.ts). */
  readonly net: InternetPlan
  private publicNext = 0
  private gatewaySync: Promise<void> = Promise.resolve()
  private throttles: Array<{ remaining: number, action?: string }> = []
  private quotaFailures = 0
  private unreachableLaunches = 0
  endpoint = ''

  constructor (opts: FakeEc2Options) {
    this.opts = opts
    this.regions = opts.regions ?? { 'us-east-1': '198.18.200.0/24', 'eu-west-1': '198.18.201.0/24' }
    this.credentials = opts.credentials ?? { [FAKE_ACCESS_KEY_ID]: FAKE_SECRET_ACCESS_KEY }
    this.net = internetPlan(opts.internet, opts.lan)
    for (const r of Object.keys(this.regions)) {
      this.images.set(r, new Set(opts.images ?? [FAKE_AMI]))
      this.vpcs.set(r, { vpcId: `vpc-${hex(17)}`, subnetId: `subnet-${hex(17)}` })
      this.keyPairsByRegion.set(r, new Map())
    }
  }

  /** Makes the sites of the regions (local driver network) and listens on 127.0.0.1, port 0. */
  async start (): Promise<string> {
    await mkdir(this.opts.dir, { recursive: true })
    const keyPath = await ensureSupercloudKey(join(this.opts.dir, 'key'))
    const sites = Object.fromEntries(Object.entries(this.regions).map(([r, subnet]) => [r, { name: r, subnet }]))
    this.ctx = { name: `${this.opts.prefix}-fake-ec2`, prefix: this.opts.prefix, dir: this.opts.dir, keyPath, sites, wan: { delayMs: 0 } }
    await this.local.ensureNetwork(this.ctx)
    await this.ensureInternet()
    const http = createHttpServer((req, res) => { void this.handle(req, res) })
    this.http = http
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(0, '127.0.0.1', () => resolve())
    })
    const addr = http.address()
    if (addr === null || typeof addr === 'string') throw new Error('fake EC2 server has no TCP address')
    this.endpoint = `http://127.0.0.1:${addr.port}`
    return this.endpoint
  }

  /** Terminates every instance (destroying its local host) and removes the sites. */
  async stop (): Promise<void> {
    await Promise.all([...this.instancesById.values()].map(async i => { await this.terminate(i).catch(() => {}) }))
    await new Promise<void>(resolve => { if (this.http !== undefined) this.http.close(() => resolve()); else resolve() })
    this.http?.closeAllConnections()
    if (this.ctx !== undefined) await this.local.destroyNetwork(this.ctx).catch(() => {})
    await destroyNs(this.sshNetns).catch(() => {})
  }

  // ---- the internet (internet.ts) ----

  /** The namespace of the internet and this machine's edge: the driver's `sshNetns` (SUPERCLOUD_EC2_SSH_NETNS). */
  get sshNetns (): string {
    return `${this.opts.prefix}-inet`
  }

  /** This machine's public address on the internet (what /checkip answers). */
  get publicAddress (): string {
    return this.net.publicAddress
  }

  /** SUPERCLOUD_LOCAL_UPLINK value joining the n-th supercloud's local WAN to this machine's LAN (one address each). */
  uplink (n = 0): string {
    return uplinkValue(this.net, this.sshNetns, n)
  }

  private async ensureInternet (): Promise<void> {
    const inet = this.sshNetns
    const wan = wanNs(this.opts.prefix)
    const n = this.net
    await ensureNs(inet)
    await sysctl(inet, 'net.ipv4.ip_forward', '1')
    for (const [br, addr, len] of [[INET_BRIDGE, n.publicAddress, n.prefixLen], [LAN_BRIDGE, n.lanGateway, n.lanPrefixLen]] as const) {
      if (!await linkExists(inet, br)) await ip(inet, ['link', 'add', br, 'type', 'bridge'])
      await ip(inet, ['link', 'set', br, 'up'])
      await ip(inet, ['addr', 'replace', `${addr}/${len}`, 'dev', br])
    }
    if (!await linkExists(wan, IGW_LINK) || !await linkExists(inet, IGW_PEER)) {
      await run(['ip', '-n', wan, 'link', 'del', IGW_LINK], { allowFailure: true })
      await run(['ip', '-n', inet, 'link', 'del', IGW_PEER], { allowFailure: true })
      await addVeth(wan, IGW_LINK, inet, IGW_PEER)
    }
    await ip(inet, ['link', 'set', IGW_PEER, 'master', INET_BRIDGE, 'up'])
    await ip(wan, ['addr', 'replace', `${n.igwAddress}/${n.prefixLen}`, 'dev', IGW_LINK])
    await ip(wan, ['link', 'set', IGW_LINK, 'up'])
    await nsRun(inet, ['nft', '-f', '-'], { input: edgeRules(n) })
    await this.syncGateway()
  }

  /** Makes the gateway's public addresses, NAT and security-group filter match the running instances. Serialised. */
  private async syncGateway (): Promise<void> {
    const next = this.gatewaySync.then(async () => { await this.syncGatewayNow() })
    this.gatewaySync = next.catch(err => { process.emitWarning(`fake EC2 server: internet gateway: ${String(err)}`) })
    await next
  }

  private async syncGatewayNow (): Promise<void> {
    const wan = wanNs(this.opts.prefix)
    const behind = [...this.instancesById.values()].filter(i => i.state === 'running' && !i.unreachable && i.privateIp !== undefined && i.publicIp !== undefined)
    const want = new Set(behind.map(i => i.publicIp as string))
    const have = (await run(['ip', '-n', wan, '-4', '-o', 'addr', 'show', 'dev', IGW_LINK])).stdout.split('\n')
      .map(l => /\sinet\s+([\d.]+)\/32\s/.exec(l)?.[1]).filter((a): a is string => a !== undefined)
    for (const a of have) if (!want.has(a)) await ip(wan, ['addr', 'del', `${a}/32`, 'dev', IGW_LINK])
    for (const a of want) if (!have.includes(a)) await ip(wan, ['addr', 'add', `${a}/32`, 'dev', IGW_LINK])
    await nsRun(wan, ['nft', '-f', '-'], {
      input: gatewayRules(behind.map(i => ({
        privateIp: i.privateIp as string,
        publicIp: i.publicIp as string,
        ingress: i.groupIds.flatMap(id => this.groups.get(id)?.ingress ?? [])
      })))
    })
  }

  // ---- steering, for tests ----

  readonly inject = {
    /** The next `times` requests (of `action`, or any) fail with RequestLimitExceeded. */
    throttle: (times: number, action?: string): void => { this.throttles.push(action !== undefined ? { remaining: times, action } : { remaining: times }) },
    /** The next `times` RunInstances fail with InstanceLimitExceeded. */
    quota: (times = 1): void => { this.quotaFailures += times },
    /** The next `times` instances launched never become reachable. */
    unreachable: (times = 1): void => { this.unreachableLaunches += times },
    removeImage: (region: string, ami: string): void => { this.images.get(region)?.delete(ami) },
    addImage: (region: string, ami: string): void => { this.images.get(region)?.add(ami) },
    /** Drops pending throttling, quota and unreachable injections. */
    clear: (): void => { this.throttles = []; this.quotaFailures = 0; this.unreachableLaunches = 0 }
  }

  instances (): FakeInstance[] {
    return [...this.instancesById.values()].map(i => ({ ...i, tags: { ...i.tags } }))
  }

  securityGroups (): Array<Omit<Group, 'ingress'> & { ingress: Perm[] }> {
    return [...this.groups.values()].map(g => ({ ...g, ingress: g.ingress.map(p => ({ ...p })) }))
  }

  keyPairs (): KeyPair[] {
    return [...this.keyPairsByRegion.values()].flatMap(m => [...m.values()])
  }

  subnetOf (region: string): { vpcId: string, subnetId: string } | undefined {
    return this.vpcs.get(region)
  }

  /** The local host behind an instance (undefined for unreachable or terminated ones). */
  hostOf (instanceId: string): HostRecord | undefined {
    return this.runtime.get(instanceId)?.host
  }

  /** Waits until provisioning and user-data of every instance are done. */
  async settled (): Promise<void> {
    for (const r of this.runtime.values()) {
      await r.provisioning?.catch(() => {})
      await r.userData?.catch(() => {})
    }
  }

  // ---- HTTP ----

  private async handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    const body = Buffer.concat(chunks)
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'GET' && url.pathname === '/checkip') {
      // Like checkip.amazonaws.com: the caller's address as seen from the internet.
      res.writeHead(200, { 'content-type': 'text/plain' })
      // This machine is behind its edge router: its public address is the edge's.
      res.end(`${this.net.publicAddress}\n`)
      return
    }
    const requestId = randomUUID()
    const q = parseQuery(body.toString('utf8'))
    const action = str(q.Action) ?? ''
    let region = ''
    const send = (status: number, xml: string, code?: string): void => {
      this.requests.push(code !== undefined ? { action, region, status, code } : { action, region, status })
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId })
      res.end(xml)
    }
    try {
      if (req.method !== 'POST') throw new Ec2ApiError('InvalidAction', `The action ${req.method ?? ''} ${url.pathname} is not valid for this web service.`)
      region = this.authenticate(req, url, body)
      if (str(q.Version) !== EC2_API_VERSION) throw new Ec2ApiError('InvalidParameterValue', `Unsupported API version '${str(q.Version) ?? ''}'`)
      const throttle = this.throttles.find(t => t.remaining > 0 && (t.action === undefined || t.action === action))
      if (throttle !== undefined) {
        throttle.remaining--
        throw new Ec2ApiError('RequestLimitExceeded', 'Request limit exceeded.', 503)
      }
      const out = await this.dispatch(action, region, q)
      send(200, responseXml(action, requestId, out))
    } catch (err) {
      if (err instanceof Ec2ApiError) {
        send(err.status, errorXml(err.code, err.message, requestId), err.code)
      } else {
        send(500, errorXml('InternalError', 'An internal error has occurred.', requestId), 'InternalError')
        process.emitWarning(`fake EC2 server: ${action}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
      }
    }
  }

  /** Checks the SigV4 Authorization header; returns the region of its credential scope. */
  private authenticate (req: IncomingMessage, url: URL, body: Buffer): string {
    const header = req.headers.authorization
    if (header === undefined) throw new Ec2ApiError('MissingAuthenticationToken', 'Request is missing Authentication Token', 403)
    const auth = parseAuthorization(header)
    if (auth === undefined) throw new Ec2ApiError('IncompleteSignature', 'The request signature does not conform to AWS standards.', 400)
    const secret = this.credentials[auth.accessKeyId]
    if (secret === undefined) throw new Ec2ApiError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401)
    if (this.opts.verifySignatures !== false) {
      const expected = expectedSignature({ method: req.method ?? 'POST', path: url.pathname, query: url.search.slice(1), headers: req.headers, body, auth, secretAccessKey: secret })
      if (expected !== auth.signature) throw new Ec2ApiError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401)
    }
    if (auth.service !== 'ec2') throw new Ec2ApiError('AuthFailure', `credential scope names service '${auth.service}', not ec2`, 401)
    if (this.regions[auth.region] === undefined) throw new Ec2ApiError('AuthFailure', `AWS was not able to validate the provided access credentials (region ${auth.region} is not enabled for this account)`, 401)
    return auth.region
  }

  private async dispatch (action: string, region: string, q: QueryObject): Promise<Array<XmlNode | undefined>> {
    switch (action) {
      case 'DescribeImages': return this.describeImages(region, q)
      case 'DescribeSubnets': return this.describeSubnets(region, q)
      case 'ImportKeyPair': return this.importKeyPair(region, q)
      case 'DescribeKeyPairs': return this.describeKeyPairs(region, q)
      case 'DeleteKeyPair': return this.deleteKeyPair(region, q)
      case 'CreateSecurityGroup': return this.createSecurityGroup(region, q)
      case 'DescribeSecurityGroups': return this.describeSecurityGroups(region, q)
      case 'AuthorizeSecurityGroupIngress': { const out = this.changeIngress(region, q, 'authorize'); await this.syncGateway(); return out }
      case 'RevokeSecurityGroupIngress': { const out = this.changeIngress(region, q, 'revoke'); await this.syncGateway(); return out }
      case 'DeleteSecurityGroup': return this.deleteSecurityGroup(region, q)
      case 'RunInstances': return this.runInstances(region, q)
      case 'DescribeInstances': return this.describeInstances(region, q)
      case 'TerminateInstances': return await this.terminateInstances(region, q)
      case 'CreateTags': return this.createTags(region, q)
      default: throw new Ec2ApiError('InvalidAction', `The action ${action} is not valid for this web service.`)
    }
  }

  // ---- images, subnets ----

  private describeImages (region: string, q: QueryObject): XmlNode[] {
    const have = this.images.get(region) ?? new Set()
    const ids = strList(q.ImageId)
    for (const id of ids) {
      if (!/^ami-[0-9a-f]{8,17}$/.test(id)) throw new Ec2ApiError('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-...")`)
      if (!have.has(id)) throw new Ec2ApiError('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`)
    }
    const shown = ids.length > 0 ? ids : [...have]
    return [itemSet('imagesSet', shown.map(id => [
      ['imageId', id], ['imageLocation', `supercloud-test/debian-12-amd64-${id}`], ['imageState', 'available'],
      ['imageOwnerId', '136693071363'], ['isPublic', true], ['architecture', 'x86_64'], ['imageType', 'machine'],
      ['name', `debian-12-amd64-${id}`], ['rootDeviceType', 'ebs'], ['virtualizationType', 'hvm'], ['hypervisor', 'xen']
    ]))]
  }

  private describeSubnets (region: string, q: QueryObject): XmlNode[] {
    const v = this.vpcs.get(region)
    const ids = strList(q.SubnetId)
    for (const id of ids) if (id !== v?.subnetId) throw new Ec2ApiError('InvalidSubnetID.NotFound', `The subnet ID '${id}' does not exist`)
    return [itemSet('subnetSet', v === undefined ? [] : [[
      ['subnetId', v.subnetId], ['vpcId', v.vpcId], ['state', 'available'], ['cidrBlock', this.regions[region] ?? ''],
      ['availabilityZone', `${region}a`], ['availableIpAddressCount', 250], ['defaultForAz', true], ['mapPublicIpOnLaunch', true]
    ]])]
  }

  // ---- key pairs ----

  private keysOf (region: string): Map<string, KeyPair> {
    const m = this.keyPairsByRegion.get(region)
    if (m === undefined) throw new Ec2ApiError('AuthFailure', `region ${region} is not enabled`, 401)
    return m
  }

  private keyXml (k: KeyPair): Array<XmlNode | undefined> {
    return [['keyPairId', k.id], ['keyName', k.name], ['keyFingerprint', k.fingerprint], ['keyType', k.publicKey.startsWith('ssh-rsa') ? 'rsa' : 'ed25519'], tagSet(k.tags)]
  }

  private importKeyPair (region: string, q: QueryObject): Array<XmlNode | undefined> {
    const keys = this.keysOf(region)
    const name = str(q.KeyName) ?? ''
    if (name === '') throw new Ec2ApiError('MissingParameter', 'The request must contain the parameter KeyName')
    if (keys.has(name)) throw new Ec2ApiError('InvalidKeyPair.Duplicate', `The keypair '${name}' already exists.`)
    const material = Buffer.from(str(q.PublicKeyMaterial) ?? '', 'base64').toString('utf8').trim()
    const blob = material.split(/\s+/)[1]
    if (!/^(ssh-ed25519|ssh-rsa) /.test(material) || blob === undefined) throw new Ec2ApiError('InvalidKey.Format', 'Key is not in valid OpenSSH public key format')
    const fingerprint = createHash('md5').update(Buffer.from(blob, 'base64')).digest('hex').match(/../g)?.join(':') ?? ''
    const k: KeyPair = { id: `key-${hex(17)}`, name, region, publicKey: material, fingerprint, tags: tagSpecs(q, 'key-pair') }
    keys.set(name, k)
    return this.keyXml(k)
  }

  private describeKeyPairs (region: string, q: QueryObject): XmlNode[] {
    const keys = [...this.keysOf(region).values()]
    const names = strList(q.KeyName)
    for (const n of names) if (!keys.some(k => k.name === n)) throw new Ec2ApiError('InvalidKeyPair.NotFound', `The key pair '${n}' does not exist`)
    const shown = keys.filter(k => (names.length === 0 || names.includes(k.name)) && matchFilters(filters(q), { 'key-name': [k.name], 'key-pair-id': [k.id] }, k.tags))
    return [itemSet('keySet', shown.map(k => this.keyXml(k)))]
  }

  private deleteKeyPair (region: string, q: QueryObject): XmlNode[] {
    const keys = this.keysOf(region)
    const name = str(q.KeyName)
    const id = str(q.KeyPairId)
    for (const k of keys.values()) if (k.name === name || k.id === id) keys.delete(k.name)
    return [['return', true]]
  }

  // ---- security groups ----

  private createSecurityGroup (region: string, q: QueryObject): XmlNode[] {
    const name = str(q.GroupName) ?? ''
    const description = str(q.GroupDescription) ?? ''
    if (name === '' || description === '') throw new Ec2ApiError('MissingParameter', 'The request must contain the parameters GroupName and GroupDescription')
    const vpcId = str(q.VpcId) ?? this.vpcs.get(region)?.vpcId ?? ''
    if (vpcId !== this.vpcs.get(region)?.vpcId) throw new Ec2ApiError('InvalidVpcID.NotFound', `The vpc ID '${vpcId}' does not exist`)
    if ([...this.groups.values()].some(g => g.region === region && g.vpcId === vpcId && g.name === name)) {
      throw new Ec2ApiError('InvalidGroup.Duplicate', `The security group '${name}' already exists for VPC '${vpcId}'`)
    }
    const g: Group = { id: `sg-${hex(17)}`, name, description, vpcId, region, tags: tagSpecs(q, 'security-group'), ingress: [] }
    this.groups.set(g.id, g)
    return [['return', true], ['groupId', g.id]]
  }

  private group (region: string, id: string | undefined): Group {
    const g = id !== undefined ? this.groups.get(id) : undefined
    if (g === undefined || g.region !== region) throw new Ec2ApiError('InvalidGroup.NotFound', `The security group '${id ?? ''}' does not exist`)
    return g
  }

  private describeSecurityGroups (region: string, q: QueryObject): XmlNode[] {
    const ids = strList(q.GroupId)
    for (const id of ids) this.group(region, id)
    const names = strList(q.GroupName)
    const shown = [...this.groups.values()].filter(g => g.region === region &&
      (ids.length === 0 || ids.includes(g.id)) && (names.length === 0 || names.includes(g.name)) &&
      matchFilters(filters(q), { 'group-name': [g.name], 'group-id': [g.id], 'vpc-id': [g.vpcId] }, g.tags))
    if (names.length > 0 && shown.length === 0) throw new Ec2ApiError('InvalidGroup.NotFound', `The security group '${names.join(', ')}' does not exist in default VPC`)
    return [itemSet('securityGroupInfo', shown.map(g => [
      ['ownerId', '123456789012'], ['groupId', g.id], ['groupName', g.name], ['groupDescription', g.description], ['vpcId', g.vpcId],
      itemSet('ipPermissions', g.ingress.map(p => [
        ['ipProtocol', p.proto], p.proto === '-1' ? undefined : ['fromPort', p.from], p.proto === '-1' ? undefined : ['toPort', p.to],
        itemSet('groups', p.groups.map(id => [['groupId', id], ['userId', '123456789012']])),
        itemSet('ipRanges', p.cidrs.map(c => [['cidrIp', c]])),
        ['ipv6Ranges', []], ['prefixListIds', []]
      ])),
      itemSet('ipPermissionsEgress', [[['ipProtocol', '-1'], ['groups', []], itemSet('ipRanges', [[['cidrIp', '0.0.0.0/0']]]), ['ipv6Ranges', []], ['prefixListIds', []]]]),
      tagSet(g.tags)
    ]))]
  }

  private changeIngress (region: string, q: QueryObject, how: 'authorize' | 'revoke'): XmlNode[] {
    const g = this.group(region, str(q.GroupId))
    for (const raw of list(q.IpPermissions)) {
      const p = obj(raw)
      const proto = str(p.IpProtocol) ?? ''
      if (!['tcp', 'udp', 'icmp', '-1'].includes(proto)) throw new Ec2ApiError('InvalidParameterValue', `Invalid value '${proto}' for IP protocol`)
      const from = Number(str(p.FromPort) ?? '-1')
      const to = Number(str(p.ToPort) ?? '-1')
      const cidrs = list(p.IpRanges).map(r => str(obj(r).CidrIp) ?? '')
      const groups = list(p.Groups).map(r => str(obj(r).GroupId) ?? '')
      for (const c of cidrs) if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(c)) throw new Ec2ApiError('InvalidParameterValue', `CIDR block ${c} is malformed`)
      for (const id of groups) this.group(region, id)
      for (const source of [...cidrs.map(c => ({ c })), ...groups.map(id => ({ id }))]) {
        const i = g.ingress.findIndex(e => e.proto === proto && e.from === from && e.to === to &&
          ('c' in source ? e.cidrs.includes(source.c) : e.groups.includes(source.id)))
        if (how === 'authorize') {
          if (i >= 0) throw new Ec2ApiError('InvalidPermission.Duplicate', `the specified rule "peer: ${'c' in source ? source.c : source.id}, ${proto.toUpperCase()}, from port: ${from}, to port: ${to}, ALLOW" already exists`)
          let e = g.ingress.find(x => x.proto === proto && x.from === from && x.to === to)
          if (e === undefined) { e = { proto, from, to, cidrs: [], groups: [] }; g.ingress.push(e) }
          if ('c' in source) e.cidrs.push(source.c); else e.groups.push(source.id)
        } else {
          if (i < 0) throw new Ec2ApiError('InvalidPermission.NotFound', 'The specified rule does not exist in this security group.')
          const e = g.ingress[i] as Perm
          if ('c' in source) e.cidrs = e.cidrs.filter(c => c !== source.c); else e.groups = e.groups.filter(x => x !== source.id)
          if (e.cidrs.length === 0 && e.groups.length === 0) g.ingress.splice(i, 1)
        }
      }
    }
    return [['return', true]]
  }

  private deleteSecurityGroup (region: string, q: QueryObject): XmlNode[] {
    const g = this.group(region, str(q.GroupId))
    const users = [...this.instancesById.values()].filter(i => i.state !== 'terminated' && i.groupIds.includes(g.id))
    if (users.length > 0) throw new Ec2ApiError('DependencyViolation', `resource ${g.id} has a dependent object`)
    const referencing = [...this.groups.values()].filter(o => o.id !== g.id && o.ingress.some(p => p.groups.includes(g.id)))
    if (referencing.length > 0) throw new Ec2ApiError('DependencyViolation', `resource ${g.id} has a dependent object`)
    this.groups.delete(g.id)
    return [['return', true]]
  }

  // ---- instances ----

  private runInstances (region: string, q: QueryObject): Array<XmlNode | undefined> {
    const token = str(q.ClientToken)
    if (token !== undefined) {
      const same = [...this.instancesById.values()].filter(i => i.region === region && i.clientToken === token)
      if (same.length > 0) return this.reservationXml(same[0]?.reservationId ?? '', same)
    }
    const imageId = str(q.ImageId) ?? ''
    if (!/^ami-[0-9a-f]{8,17}$/.test(imageId)) throw new Ec2ApiError('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`)
    if (this.images.get(region)?.has(imageId) !== true) throw new Ec2ApiError('InvalidAMIID.NotFound', `The image id '[${imageId}]' does not exist`)
    const instanceType = str(q.InstanceType) ?? 'm1.small'
    const keyName = str(q.KeyName) ?? ''
    if (keyName !== '' && !this.keysOf(region).has(keyName)) throw new Ec2ApiError('InvalidKeyPair.NotFound', `The key pair '${keyName}' does not exist`)
    const groupIds = strList(q.SecurityGroupId)
    for (const id of groupIds) this.group(region, id)
    const vpc = this.vpcs.get(region)
    const subnetId = str(q.SubnetId) ?? vpc?.subnetId ?? ''
    if (subnetId !== vpc?.subnetId) throw new Ec2ApiError('InvalidSubnetID.NotFound', `The subnet ID '${subnetId}' does not exist`)
    const min = Number(str(q.MinCount) ?? '1')
    const max = Number(str(q.MaxCount) ?? String(min))
    if (!(min >= 1 && max >= min)) throw new Ec2ApiError('InvalidParameterValue', 'MinCount and MaxCount must be at least 1, MaxCount >= MinCount')
    if (this.quotaFailures > 0) {
      this.quotaFailures--
      throw new Ec2ApiError('InstanceLimitExceeded', `You have requested more instances (${max}) than your current instance limit of 0 allows for the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.`)
    }
    const market = obj(q.InstanceMarketOptions)
    const spot = str(market.MarketType) === 'spot'
    const userData = str(q.UserData)
    const tags = tagSpecs(q, 'instance')
    const reservationId = `r-${hex(17)}`
    const made: FakeInstance[] = []
    for (let n = 0; n < max; n++) {
      const inst: FakeInstance = {
        id: `i-${hex(17)}`, region, reservationId, imageId, instanceType, keyName, groupIds, subnetId, az: str(obj(q.Placement).AvailabilityZone) ?? `${region}a`,
        tags: { ...tags }, state: 'pending', launchTime: new Date().toISOString(), spot, unreachable: false
      }
      if (token !== undefined) inst.clientToken = token
      if (userData !== undefined) inst.userData = userData
      if (this.unreachableLaunches > 0) { this.unreachableLaunches--; inst.unreachable = true }
      this.instancesById.set(inst.id, inst)
      const rt: InstanceRuntime = {}
      this.runtime.set(inst.id, rt)
      rt.provisioning = this.provision(inst, rt)
      made.push(inst)
    }
    return this.reservationXml(reservationId, made)
  }

  private nextPublic (): string {
    return publicAddressOf(this.net, this.publicNext++)
  }

  /** Makes the instance's host; the instance is `running` once it answers SSH (user-data runs after, as cloud-init's does). */
  private async provision (inst: FakeInstance, rt: InstanceRuntime): Promise<void> {
    const ctx = this.ctx
    if (ctx === undefined) throw new Error('fake EC2 server not started')
    const publicIp = this.nextPublic()
    if (inst.unreachable) {
      // Running, with addresses, but nothing behind them.
      await new Promise(resolve => setTimeout(resolve, 50))
      if (inst.state !== 'pending') return
      inst.privateIp = this.regions[inst.region]?.replace(/\.\d+\/\d+$/, '.250') ?? '198.18.0.250'
      inst.publicIp = publicIp
      inst.state = 'running'
      return
    }
    try {
      const host = await this.local.createHost(ctx, {
        name: inst.id, site: inst.region, driver: 'local', cpus: 1, memoryBytes: 512 * 1024 * 1024, hypervisor: { backend: 'qemu', accel: 'tcg' }
      })
      rt.host = host
      const data = host.driverData as unknown as LocalHostData
      // EC2 puts the key pair's public key in the instance's authorized keys.
      const key = this.keysOf(inst.region).get(inst.keyName)
      await writeFile(join(data.sshdDir, 'authorized_keys'), key !== undefined ? `${key.publicKey}\n` : '', { mode: 0o600 })
      if (inst.state !== 'pending') return
      inst.privateIp = host.address
      inst.publicIp = publicIp
      inst.state = 'running'
      await this.syncGateway()
      rt.userData = this.runUserData(inst, rt, host)
    } catch (err) {
      inst.state = 'terminated'
      inst.stateReason = { code: 'Server.InternalError', message: `Server.InternalError: ${err instanceof Error ? err.message : String(err)}` }
    }
  }

  /** cloud-init's part: a user-data starting with `#!` runs once as root on the instance. */
  private async runUserData (inst: FakeInstance, rt: InstanceRuntime, host: HostRecord): Promise<void> {
    const script = inst.userData !== undefined ? Buffer.from(inst.userData, 'base64').toString('utf8') : ''
    if (!script.startsWith('#!')) return
    const dir = join(this.opts.dir, 'instances', inst.id)
    const root = join(dir, 'root')
    await mkdir(root, { recursive: true })
    await writeFile(join(dir, 'user-data'), script, { mode: 0o700 })
    const ns = (host.driverData as unknown as LocalHostData).ns
    const r = await run(['ip', 'netns', 'exec', ns, 'env', `SC_HOST_ROOT=${root}`, 'sh', join(dir, 'user-data')], { allowFailure: true })
    inst.userDataExit = r.code
    await writeFile(join(dir, 'console.log'), r.stdout + r.stderr)
  }

  private async terminate (inst: FakeInstance): Promise<void> {
    const rt = this.runtime.get(inst.id)
    if (inst.state === 'terminated') return
    inst.state = 'shutting-down'
    await rt?.provisioning?.catch(() => {})
    await rt?.userData?.catch(() => {})
    // Off the internet first (its public address, NAT and rules), then the host.
    await this.syncGateway().catch(() => {})
    if (rt !== undefined) {
      if (rt.host !== undefined && this.ctx !== undefined) await this.local.destroyHost(this.ctx, rt.host)
      rt.host = undefined
    }
    // The root volume goes with the instance: what the bootstrap made there too.
    const sc = inst.tags.supercloud
    const h = inst.tags['supercloud:host']
    if (sc !== undefined && h !== undefined && /^[a-z0-9-]+$/.test(sc) && /^[a-z0-9-]+$/.test(h)) {
      await rm(hostStateDir(sc, h), { recursive: true, force: true })
      await rmdir(`/var/lib/supercloud/${sc}`).catch(() => {})
    }
    await rm(join(this.opts.dir, 'instances', inst.id, 'root'), { recursive: true, force: true })
    inst.state = 'terminated'
    inst.stateReason = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' }
  }

  private instanceXml (i: FakeInstance): Array<XmlNode | undefined> {
    const group = (id: string): Array<XmlNode | undefined> => [['groupId', id], ['groupName', this.groups.get(id)?.name ?? '']]
    return [
      ['instanceId', i.id], ['imageId', i.imageId],
      ['instanceState', [['code', STATE_CODES[i.state]], ['name', i.state]]],
      ['privateDnsName', i.privateIp !== undefined ? `ip-${i.privateIp.replace(/\./g, '-')}.${i.region}.compute.internal` : ''],
      ['dnsName', ''],
      ['keyName', i.keyName], ['amiLaunchIndex', 0], ['instanceType', i.instanceType], ['launchTime', i.launchTime],
      ['placement', [['availabilityZone', i.az], ['tenancy', 'default']]],
      ['monitoring', [['state', 'disabled']]],
      i.state === 'terminated' ? undefined : ['subnetId', i.subnetId],
      i.state === 'terminated' ? undefined : ['vpcId', this.vpcs.get(i.region)?.vpcId ?? ''],
      i.privateIp !== undefined && i.state !== 'terminated' ? ['privateIpAddress', i.privateIp] : undefined,
      i.publicIp !== undefined && i.state !== 'terminated' ? ['ipAddress', i.publicIp] : undefined,
      itemSet('groupSet', i.groupIds.map(group)),
      i.stateReason !== undefined ? ['stateReason', [['code', i.stateReason.code], ['message', i.stateReason.message]]] : undefined,
      i.stateReason !== undefined ? ['reason', i.stateReason.message] : undefined,
      ['architecture', 'x86_64'], ['rootDeviceType', 'ebs'], ['rootDeviceName', '/dev/xvda'],
      i.spot ? ['instanceLifecycle', 'spot'] : undefined,
      i.spot ? ['spotInstanceRequestId', `sir-${i.id.slice(2, 10)}`] : undefined,
      i.clientToken !== undefined ? ['clientToken', i.clientToken] : undefined,
      ['virtualizationType', 'hvm'], ['hypervisor', 'xen'],
      tagSet(i.tags)
    ]
  }

  private reservationXml (reservationId: string, instances: FakeInstance[]): XmlNode[] {
    return [['reservationId', reservationId], ['ownerId', '123456789012'], ['groupSet', []], itemSet('instancesSet', instances.map(i => this.instanceXml(i)))]
  }

  private describeInstances (region: string, q: QueryObject): XmlNode[] {
    const ids = strList(q.InstanceId)
    for (const id of ids) {
      const i = this.instancesById.get(id)
      if (i === undefined || i.region !== region) throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
    }
    const fs = filters(q)
    const shown = [...this.instancesById.values()].filter(i => i.region === region && (ids.length === 0 || ids.includes(i.id)) &&
      matchFilters(fs, { 'instance-state-name': [i.state], 'instance-id': [i.id], 'image-id': [i.imageId], 'instance-type': [i.instanceType], 'key-name': [i.keyName] }, i.tags))
    const byReservation = new Map<string, FakeInstance[]>()
    for (const i of shown) byReservation.set(i.reservationId, [...(byReservation.get(i.reservationId) ?? []), i])
    return [itemSet('reservationSet', [...byReservation].map(([rid, is]) => [
      ['reservationId', rid], ['ownerId', '123456789012'], ['groupSet', []], itemSet('instancesSet', is.map(i => this.instanceXml(i)))
    ]))]
  }

  private async terminateInstances (region: string, q: QueryObject): Promise<XmlNode[]> {
    const ids = strList(q.InstanceId)
    const found: FakeInstance[] = []
    for (const id of ids) {
      const i = this.instancesById.get(id)
      if (i === undefined || i.region !== region) throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
      found.push(i)
    }
    const before = found.map(i => i.state)
    // Like EC2, the answer comes at once (shutting-down); the instance is gone a little later.
    for (const i of found) void this.terminate(i).catch(err => { process.emitWarning(`fake EC2 server: terminate ${i.id}: ${String(err)}`) })
    return [itemSet('instancesSet', found.map((i, n) => [
      ['instanceId', i.id],
      ['currentState', [['code', STATE_CODES[i.state]], ['name', i.state]]],
      ['previousState', [['code', STATE_CODES[before[n] as InstanceStateName]], ['name', before[n] as string]]]
    ]))]
  }

  private createTags (region: string, q: QueryObject): XmlNode[] {
    const ids = strList(q.ResourceId)
    const tags = Object.fromEntries(list(q.Tag).map(t => [str(obj(t).Key) ?? '', str(obj(t).Value) ?? '']))
    for (const id of ids) {
      const target = this.instancesById.get(id)?.tags ?? this.groups.get(id)?.tags ?? [...this.keysOf(region).values()].find(k => k.id === id)?.tags
      if (target === undefined) throw new Ec2ApiError('InvalidID', `The ID '${id}' is not valid`)
      Object.assign(target, tags)
    }
    return [['return', true]]
  }
}

/** EC2 filter semantics: every filter must match; values of one filter are alternatives; `tag:K`, `tag-key`. */
export function matchFilters (fs: Array<{ name: string, values: string[] }>, fields: Record<string, string[]>, tags: Record<string, string>): boolean {
  return fs.every(f => {
    if (f.name.startsWith('tag:')) {
      const v = tags[f.name.slice(4)]
      return v !== undefined && f.values.some(w => globMatch(w, v))
    }
    if (f.name === 'tag-key') return f.values.some(w => Object.keys(tags).some(k => globMatch(w, k)))
    const have = fields[f.name]
    if (have === undefined) throw new Ec2ApiError('InvalidParameterValue', `The filter '${f.name}' is invalid`)
    return f.values.some(w => have.some(h => globMatch(w, h)))
  })
}

function globMatch (pattern: string, value: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('?')) return pattern === value
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`)
  return re.test(value)
}
