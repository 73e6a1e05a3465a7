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
 * and reclaim spot instances (`inject.interrupt`: notice in the instance metadata, imds.ts, then termination),
 * and look at it with `instances()`, `securityGroups()`, `keyPairs()`, `requests`.
 *
 * This module is the server's face (lifecycle, steering, inspection); state.ts holds its
 * state, http.ts the Query API plumbing, key-pairs.ts, security-groups.ts, images.ts and
 * instances.ts the actions, instance-host.ts the host behind an instance, gateway.ts the internet.
 */
import { mkdir } from 'node:fs/promises'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { join } from 'node:path'
import type { HostRecord } from '../../cloud.ts'
import { createLocalDriver, ensureSupercloudKey } from '../../local/driver.ts'
import { destroyNs } from '../../local/netns.ts'
import { internetPlan, uplinkValue, type InternetPlan } from './internet.ts'
import { hex, type FakeEc2Options, type FakeEc2State, type FakeInstance, type Group, type KeyPair, type Perm, type RequestLogEntry } from './state.ts'
import { ensureInternet, inetNs } from './gateway.ts'
import { handle } from './http.ts'
import { terminate } from './instance-host.ts'
import { interrupt, recommendRebalance } from './spot.ts'


export const FAKE_ACCESS_KEY_ID = 'AKIASUPERCLOUDTEST01'
export const FAKE_SECRET_ACCESS_KEY = 'supercloud-test-secret-key-not-a-real-one'
/** AMI present in every region of a fresh server. */
export const FAKE_AMI = 'ami-0d5eb1a2c3d4e5f60'

export class FakeEc2Server {
  readonly opts: FakeEc2Options
  readonly requests: RequestLogEntry[]
  /** The internet's addresses (internet.ts). */
  readonly net: InternetPlan
  private readonly s: FakeEc2State
  private http?: HttpServer
  endpoint = ''

  constructor (opts: FakeEc2Options) {
    const regions = opts.regions ?? { 'us-east-1': '198.18.200.0/24', 'eu-west-1': '198.18.201.0/24' }
    this.s = {
      opts,
      requests: [],
      regions,
      credentials: opts.credentials ?? { [FAKE_ACCESS_KEY_ID]: FAKE_SECRET_ACCESS_KEY },
      images: new Map(),
      vpcs: new Map(),
      groups: new Map(),
      keyPairsByRegion: new Map(),
      instancesById: new Map(),
      runtime: new Map(),
      local: createLocalDriver(),
      net: internetPlan(opts.internet, opts.lan),
      publicNext: 0,
      gatewaySync: Promise.resolve(),
      throttles: [],
      quotaFailures: 0,
      unreachableLaunches: 0,
      spotPrices: new Map(),
      spotCapacityOut: new Set()
    }
    this.opts = opts
    this.requests = this.s.requests
    this.net = this.s.net
    for (const r of Object.keys(regions)) {
      this.s.images.set(r, new Set(opts.images ?? [FAKE_AMI]))
      this.s.vpcs.set(r, { vpcId: `vpc-${hex(17)}`, subnetId: `subnet-${hex(17)}` })
      this.s.keyPairsByRegion.set(r, new Map())
    }
  }

  /** Makes the sites of the regions (local driver network) and listens on 127.0.0.1, port 0. */
  async start (): Promise<string> {
    const s = this.s
    await mkdir(s.opts.dir, { recursive: true })
    const keyPath = await ensureSupercloudKey(join(s.opts.dir, 'key'))
    const sites = Object.fromEntries(Object.entries(s.regions).map(([r, subnet]) => [r, { name: r, subnet }]))
    s.ctx = { name: `${s.opts.prefix}-fake-ec2`, prefix: s.opts.prefix, dir: s.opts.dir, keyPath, sites, wan: { delayMs: 0 } }
    await s.local.ensureNetwork(s.ctx)
    await ensureInternet(s)
    const http = createHttpServer((req, res) => { void handle(s, req, res) })
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
    const s = this.s
    await Promise.all([...s.instancesById.values()].map(async i => { await terminate(s, i).catch(() => {}) }))
    await new Promise<void>(resolve => { if (this.http !== undefined) this.http.close(() => resolve()); else resolve() })
    this.http?.closeAllConnections()
    if (s.ctx !== undefined) await s.local.destroyNetwork(s.ctx).catch(() => {})
    await destroyNs(this.sshNetns).catch(() => {})
  }

  // ---- the internet (internet.ts, gateway.ts) ----

  /** The namespace of the internet and this machine's edge: the driver's `sshNetns` (SUPERCLOUD_EC2_SSH_NETNS). */
  get sshNetns (): string {
    return inetNs(this.opts.prefix)
  }

  /** This machine's public address on the internet (what /checkip answers). */
  get publicAddress (): string {
    return this.net.publicAddress
  }

  /** SUPERCLOUD_LOCAL_UPLINK value joining the n-th supercloud's local WAN to this machine's LAN (one address each). */
  uplink (n = 0): string {
    return uplinkValue(this.net, this.sshNetns, n)
  }

  // ---- steering, for tests ----

  readonly inject = {
    /** The next `times` requests (of `action`, or any) fail with RequestLimitExceeded. */
    throttle: (times: number, action?: string): void => { this.s.throttles.push(action !== undefined ? { remaining: times, action } : { remaining: times }) },
    /** The next `times` RunInstances fail with InstanceLimitExceeded. */
    quota: (times = 1): void => { this.s.quotaFailures += times },
    /** The next `times` instances launched never become reachable. */
    unreachable: (times = 1): void => { this.s.unreachableLaunches += times },
    removeImage: (region: string, ami: string): void => { this.s.images.get(region)?.delete(ami) },
    addImage: (region: string, ami: string): void => { this.s.images.get(region)?.add(ami) },
    /**
     * Reclaims a running spot instance as EC2 does: the interruption notice in its metadata now
     * (`spot/instance-action`, and a rebalance recommendation), termination `noticeSeconds` later
     * (its host namespace and every process in it go). Returns the stated termination time.
     */
    interrupt: (instanceId: string, noticeSeconds = 120): string => interrupt(this.s, instanceId, noticeSeconds),
    /** A rebalance recommendation in a spot instance's metadata (nothing else happens). */
    rebalance: (instanceId: string): void => { recommendRebalance(this.s, instanceId) },
    /** The spot price DescribeSpotPriceHistory answers for a type (USD per hour). */
    spotPrice: (region: string, instanceType: string, usdPerHour: number): void => { this.s.spotPrices.set(`${region}/${instanceType}`, usdPerHour) },
    /** Whether the spot pool of a type has capacity (default yes): without, a spot launch of it fails as EC2's does. */
    spotCapacity: (region: string, instanceType: string, available: boolean): void => { if (available) this.s.spotCapacityOut.delete(`${region}/${instanceType}`); else this.s.spotCapacityOut.add(`${region}/${instanceType}`) },
    /** Drops pending throttling, quota and unreachable injections. */
    clear: (): void => { this.s.throttles = []; this.s.quotaFailures = 0; this.s.unreachableLaunches = 0 }
  }

  instances (): FakeInstance[] {
    return [...this.s.instancesById.values()].map(i => ({ ...i, tags: { ...i.tags } }))
  }

  securityGroups (): Array<Omit<Group, 'ingress'> & { ingress: Perm[] }> {
    return [...this.s.groups.values()].map(g => ({ ...g, ingress: g.ingress.map(p => ({ ...p })) }))
  }

  keyPairs (): KeyPair[] {
    return [...this.s.keyPairsByRegion.values()].flatMap(m => [...m.values()])
  }

  subnetOf (region: string): { vpcId: string, subnetId: string } | undefined {
    return this.s.vpcs.get(region)
  }

  /** The local host behind an instance (undefined for unreachable or terminated ones). */
  hostOf (instanceId: string): HostRecord | undefined {
    return this.s.runtime.get(instanceId)?.host
  }

  /** Waits until provisioning and user-data of every instance are done. */
  async settled (): Promise<void> {
    for (const r of this.s.runtime.values()) {
      await r.provisioning?.catch(() => {})
      await r.userData?.catch(() => {})
    }
  }
}
