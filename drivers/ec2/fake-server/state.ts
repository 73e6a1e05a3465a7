/**
 * The fake EC2 server's state (FakeEc2State): its regions and their resources, the instances
 * and their hosts, the internet plan and the tests' injections. One object, made by the
 * server (server.ts) and passed to the modules serving each part of the API.
 */
import { randomBytes } from 'node:crypto'
import type { CloudDriver, DriverContext, HostRecord } from '../../cloud.ts'
import type { InternetPlan } from './internet.ts'

export type InstanceStateName = 'pending' | 'running' | 'shutting-down' | 'terminated'
export const STATE_CODES: Record<InstanceStateName, number> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48 }

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

export interface Perm { proto: string, from: number, to: number, cidrs: string[], groups: string[] }
export interface Group { id: string, name: string, description: string, vpcId: string, region: string, tags: Record<string, string>, ingress: Perm[] }
export interface KeyPair { id: string, name: string, region: string, publicKey: string, fingerprint: string, tags: Record<string, string> }

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
  /** What the instance printed on its console (cloud-init's host key fingerprints, the user-data's output): GetConsoleOutput. */
  console: string
  /** The spot interruption notice the instance metadata shows (`spot/instance-action`), once issued. */
  interruption?: { action: 'terminate' | 'stop', time: string }
  /** The rebalance recommendation the instance metadata shows (`events/recommendations/rebalance`), once issued. */
  rebalance?: { noticeTime: string }
}

/** The host side of an instance: its local host, and the work making it and running its user-data. */
export interface InstanceRuntime {
  host?: HostRecord
  provisioning?: Promise<void>
  userData?: Promise<void>
  /** The instance's metadata service (imds.ts), once the host is up. */
  imds?: { close: () => Promise<void> }
  /** The reclaim scheduled by an interruption. */
  reclaim?: NodeJS.Timeout
}

export interface RequestLogEntry { action: string, region: string, status: number, code?: string }

export interface FakeEc2State {
  readonly opts: FakeEc2Options
  readonly requests: RequestLogEntry[]
  readonly regions: Record<string, string>
  readonly credentials: Record<string, string>
  readonly images: Map<string, Set<string>>
  readonly vpcs: Map<string, { vpcId: string, subnetId: string }>
  readonly groups: Map<string, Group>
  readonly keyPairsByRegion: Map<string, Map<string, KeyPair>>
  readonly instancesById: Map<string, FakeInstance>
  readonly runtime: Map<string, InstanceRuntime>
  /** Makes the instances' hosts. */
  readonly local: CloudDriver
  /** The local driver's context, once started. */
  ctx?: DriverContext
  /** The internet's addresses (internet.ts). */
  readonly net: InternetPlan
  publicNext: number
  gatewaySync: Promise<void>
  throttles: Array<{ remaining: number, action?: string }>
  quotaFailures: number
  unreachableLaunches: number
  /** Spot prices set by tests (`region/instanceType` → USD per hour); otherwise a fixed share of on-demand. */
  spotPrices: Map<string, number>
  /** Spot pools (`region/instanceType`) with no capacity (tests): RunInstances answers InsufficientInstanceCapacity. */
  spotCapacityOut: Set<string>
}

export function hex (n: number): string {
  return randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n)
}
