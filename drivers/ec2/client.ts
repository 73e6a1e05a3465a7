/**
 * What the EC2 driver's modules share (Ec2Env): the options, one EC2Client per region and
 * endpoint (the SDK retries throttling with its backoff, `maxAttempts`), the per-region locks,
 * and the helpers around them: SDK errors → typed errors (call), cancellable sleep, tags.
 */
import { EC2Client, type TagSpecification } from '@aws-sdk/client-ec2'
import { CancelledError, throwIfAborted } from '../../core/errors.ts'
import { Ec2Error, mapEc2Error } from './errors.ts'
import { ownTags, type Ec2Identity } from './plan.ts'

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

/** The state of one driver instance, passed to every module of the driver. */
export interface Ec2Env {
  opts: Ec2DriverOptions
  clients: Map<string, EC2Client>
  regionLocks: Map<string, Promise<unknown>>
  pollMs: number
  sshNetns: string | undefined
}

export function createEc2Env (opts: Ec2DriverOptions): Ec2Env {
  const envNetns = process.env.SUPERCLOUD_EC2_SSH_NETNS
  const sshNetns = opts.sshNetns ?? (envNetns !== undefined && envNetns !== '' ? envNetns : undefined)
  if (sshNetns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(sshNetns)) throw new Ec2Error('SC_EC2_SPEC', `SSH namespace '${sshNetns}' is not a namespace name`)
  return { opts, clients: new Map(), regionLocks: new Map(), pollMs: opts.pollMs ?? 2000, sshNetns }
}

/** The endpoint of a host's region: its own, the driver's, env SUPERCLOUD_EC2_ENDPOINT, else AWS. */
export function endpointFor (env: Ec2Env, o: { endpoint?: string } | undefined): string | undefined {
  return o?.endpoint ?? env.opts.endpoint ?? (process.env.SUPERCLOUD_EC2_ENDPOINT !== undefined && process.env.SUPERCLOUD_EC2_ENDPOINT !== '' ? process.env.SUPERCLOUD_EC2_ENDPOINT : undefined)
}

export function clientFor (env: Ec2Env, region: string, endpoint: string | undefined): EC2Client {
  const key = `${region} ${endpoint ?? ''}`
  let c = env.clients.get(key)
  if (c === undefined) {
    c = env.opts.clientFactory?.(region, endpoint) ??
      new EC2Client({ region, maxAttempts: env.opts.maxAttempts ?? 5, ...(endpoint !== undefined ? { endpoint } : {}) })
    env.clients.set(key, c)
  }
  return c
}

/** Sends a command; SDK errors become typed errors. */
export async function call<T> (c: EC2Client, region: string, doing: string, fn: (c: EC2Client) => Promise<T>, ami?: string): Promise<T> {
  try {
    return await fn(c)
  } catch (err) {
    throw mapEc2Error(err, ami !== undefined ? { region, doing, ami } : { region, doing })
  }
}

/** Runs `fn` after every earlier holder of `key` (of this driver) is done. */
export async function withRegionLock<T> (env: Ec2Env, key: string, fn: () => Promise<T>): Promise<T> {
  const prev = env.regionLocks.get(key) ?? Promise.resolve()
  const next = prev.then(fn, fn)
  env.regionLocks.set(key, next.catch(() => undefined))
  return await next
}

export async function sleep (ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  throwIfAborted(signal, what)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(new CancelledError(what)) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

export function tagSpec (type: TagSpecification['ResourceType'], id: Ec2Identity, host?: string): TagSpecification {
  return { ResourceType: type, Tags: ownTags(id, host) }
}
