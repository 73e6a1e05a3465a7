/**
 * Cloud drivers provision hosts. Each driver returns, for every host, how to reach it
 * over SSH; everything after that (Blanket bootstrap, agent, guests) goes over SSH only.
 */
import type { HostSpec, SiteSpec, WanSpec } from '../core/spec.ts'
import type { OperationOptions } from '../core/progress.ts'

/** How the controller reaches a host over SSH (defined with the SSH client in core/ssh.ts). */
export type { SshEndpoint } from '../core/ssh.ts'
import type { HostKeyPins, SshEndpoint } from '../core/ssh.ts'

/** What a driver knows about one host it made. Stored as JSON in the state store. */
export interface HostRecord {
  name: string
  site: string
  driver: string
  /** The host's address on its site network. */
  address: string
  ssh: SshEndpoint
  /** Directory on the host where the Blanket layer keeps its files (agent, guests, sockets). */
  stateDir: string
  /** Bridge on the host that guest NICs attach to (foundation guest networking). */
  guestBridge: string
  /** Driver-private data needed to destroy the host (namespace names, pids...). */
  driverData: Record<string, unknown>
  /**
   * How hosts outside the host's own network reach it, when they can: hosts whose records
   * name the same `network` reach each other at `address`; others send to `publicAddress`
   * (an EC2 instance's public IP; the NAT address of a local site with an internet uplink).
   * Used for extender endpoints. Absent: reachable at `address` only.
   */
  reach?: { network: string, publicAddress: string }
}

export type HostHealth = 'running' | 'gone' | 'unreachable'

/** Everything a driver needs to know about the supercloud it works for. */
export interface DriverContext {
  /** Supercloud name. */
  name: string
  /** Short per-supercloud prefix for kernel object names (namespaces, links), e.g. "sc3f2a". */
  prefix: string
  /** Controller-side directory of this supercloud (keys, driver files). */
  dir: string
  /** Path of the supercloud's SSH private key (public key at `${path}.pub`). */
  keyPath: string
  sites: Record<string, SiteSpec>
  wan: WanSpec
  /**
   * All hosts of the spec, when the caller knows them. The local driver uses them to
   * allocate host addresses deterministically (hosts of a site in name order).
   */
  hosts?: Record<string, HostSpec>
  /** The controller's pinned host keys: every SSH connection a driver makes checks (and on first contact pins) the host's key there. */
  hostKeys?: HostKeyPins
  /**
   * How long a guest may take to boot on this controller's hosts (SUPERCLOUD_BOOT_TIMEOUT_MS). A
   * driver that boots a machine itself (the local driver's Xen machines, a TCG machine running
   * Xen and its dom0) gives that machine at least as long. Not part of the saved context.
   */
  bootTimeoutMs?: number
}

export interface CloudDriver {
  readonly name: string
  /** Create the shared networks (sites, WAN) this driver needs. Idempotent. */
  ensureNetwork (ctx: DriverContext, opts?: OperationOptions): Promise<void>
  /** Remove the shared networks. Idempotent; succeeds when already gone. */
  destroyNetwork (ctx: DriverContext, opts?: OperationOptions): Promise<void>
  /** Create (or adopt, when it already exists from an interrupted run) one host. Idempotent. */
  createHost (ctx: DriverContext, spec: HostSpec, opts?: OperationOptions): Promise<HostRecord>
  /** Whether the host still exists. */
  describeHost (ctx: DriverContext, record: HostRecord): Promise<HostHealth>
  /** Remove the host and everything the driver made for it. Idempotent; succeeds when already gone. */
  destroyHost (ctx: DriverContext, record: HostRecord, opts?: OperationOptions): Promise<void>
}

/**
 * A driver loaded the first time one of its methods is called: a command whose spec has no EC2
 * hosts never loads the AWS SDK (most of the CLI's start-up time otherwise).
 */
export function lazyDriver (name: string, load: () => Promise<CloudDriver>): CloudDriver {
  let driver: Promise<CloudDriver> | undefined
  const get = async (): Promise<CloudDriver> => await (driver ??= load())
  return {
    name,
    ensureNetwork: async (ctx, opts) => { await (await get()).ensureNetwork(ctx, opts) },
    destroyNetwork: async (ctx, opts) => { await (await get()).destroyNetwork(ctx, opts) },
    createHost: async (ctx, spec, opts) => await (await get()).createHost(ctx, spec, opts),
    describeHost: async (ctx, record) => await (await get()).describeHost(ctx, record),
    destroyHost: async (ctx, record, opts) => { await (await get()).destroyHost(ctx, record, opts) }
  }
}
