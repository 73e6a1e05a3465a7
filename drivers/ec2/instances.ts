/**
 * The EC2 driver's instances once launched: finding ours by tag, describing one, waiting for a
 * state, terminating; and the driver's describeHost (health) and destroyHost on top of them.
 */
import { DescribeInstancesCommand, TerminateInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2'
import type { DriverContext, HostHealth, HostRecord } from '../cloud.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { Ec2Error, awsErrorCode, mapEc2Error } from './errors.ts'
import { ownInstanceFilters } from './plan.ts'
import { call, clientFor, sleep, type Ec2Env } from './client.ts'
import { regionsOfRecord } from './regions.ts'
import type { Ec2HostData } from './record.ts'

/** States of an instance that is (or may become) a host. */
export const LIVE = new Set(['pending', 'running', 'stopping', 'stopped'])

/** The supercloud's instances in a region (all, or those of one host), by tag. */
export async function findInstances (c: EC2Client, region: string, ctx: DriverContext, host?: string): Promise<Instance[]> {
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

export async function describeOne (c: EC2Client, region: string, instanceId: string): Promise<Instance | undefined> {
  try {
    const out = await c.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
    return out.Reservations?.[0]?.Instances?.[0]
  } catch (err) {
    if (awsErrorCode(err) === 'InvalidInstanceID.NotFound') return undefined
    throw mapEc2Error(err, { region, doing: `looking up instance ${instanceId}` })
  }
}

export async function waitForState (env: Ec2Env, c: EC2Client, region: string, host: string, instanceId: string, want: 'running' | 'terminated', opts?: OperationOptions): Promise<Instance | undefined> {
  const what = want === 'running' ? `starting host ${host}` : `terminating host ${host}`
  const timeout = env.opts.stateTimeoutMs ?? 10 * 60000
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
    await sleep(env.pollMs, opts?.signal, what)
  }
}

export async function terminate (env: Ec2Env, c: EC2Client, region: string, host: string, ids: string[], opts?: OperationOptions): Promise<void> {
  if (ids.length === 0) return
  opts?.onProgress?.({ subject: `host ${host}`, phase: 'destroy', message: `terminating ${ids.join(', ')}` })
  for (const id of ids) {
    try {
      await c.send(new TerminateInstancesCommand({ InstanceIds: [id] }))
    } catch (err) {
      if (awsErrorCode(err) !== 'InvalidInstanceID.NotFound') throw mapEc2Error(err, { region, doing: `terminating instance ${id} of host ${host}` })
    }
  }
  for (const id of ids) await waitForState(env, c, region, host, id, 'terminated', opts)
}

export async function describeHost (env: Ec2Env, ctx: DriverContext, record: HostRecord): Promise<HostHealth> {
  const d = record.driverData as Partial<Ec2HostData>
  for (const [region, endpoint] of await regionsOfRecord(env, ctx, record)) {
    const c = clientFor(env, region, endpoint)
    const inst = d.instanceId !== undefined && d.region === region
      ? await describeOne(c, region, d.instanceId)
      : (await findInstances(c, region, ctx, record.name))[0]
    const state = inst?.State?.Name
    if (state === 'running') return 'running'
    if (state === 'pending' || state === 'stopping' || state === 'stopped') return 'unreachable'
  }
  return 'gone'
}

export async function destroyHost (env: Ec2Env, ctx: DriverContext, record: HostRecord, opts?: OperationOptions): Promise<void> {
  const d = record.driverData as Partial<Ec2HostData>
  for (const [region, endpoint] of await regionsOfRecord(env, ctx, record)) {
    const c = clientFor(env, region, endpoint)
    // By id, and by tag: a partial create may have made an instance whose id was never recorded.
    const ids = new Set<string>()
    if (d.instanceId !== undefined && d.region === region) {
      const inst = await describeOne(c, region, d.instanceId)
      if (inst !== undefined && inst.State?.Name !== 'terminated') ids.add(d.instanceId)
    }
    for (const i of await findInstances(c, region, ctx, record.name)) if (i.InstanceId !== undefined) ids.add(i.InstanceId)
    await terminate(env, c, region, record.name, [...ids], opts)
  }
}
