/**
 * The EC2 driver's createHost: adopt the instance of an interrupted run or launch one (AMI
 * check, region network, RunInstances with the host bootstrap as user-data), wait for it to
 * run, to answer SSH and for its bootstrap report; terminate it when it never becomes usable.
 */
import { readFile } from 'node:fs/promises'
import { DescribeImagesCommand, GetConsoleOutputCommand, RunInstancesCommand, type EC2Client, type Instance, type RunInstancesCommandInput, type _InstanceType } from '@aws-sdk/client-ec2'
import type { DriverContext, HostRecord } from '../cloud.ts'
import type { Ec2HostOptions, HostSpec } from '../../core/spec.ts'
import type { OperationOptions, ProgressPhase } from '../../core/progress.ts'
import { CancelledError, HostKeyMismatchError, throwIfAborted } from '../../core/errors.ts'
import { SshConnection, shq } from '../../core/ssh.ts'
import { consoleFingerprints } from '../../core/host-keys.ts'
import { HOST_REPORT_FILE, ec2UserData, hostStateDir, parseHostReport, type HostReport } from '../host-bootstrap/cloud-init.ts'
import { Ec2Error, mapEc2Error } from './errors.ts'
import { hostOptions, type Ec2Identity } from './plan.ts'
import { call, clientFor, endpointFor, sleep, tagSpec, type Ec2Env } from './client.ts'
import { rememberRegion, specsByRegion } from './regions.ts'
import { ensureRegion } from './network.ts'
import { findInstances, LIVE, terminate, waitForState } from './instances.ts'
import { recordOf, type Ec2HostData } from './record.ts'

export async function createHost (env: Ec2Env, ctx: DriverContext, spec: HostSpec, opts?: OperationOptions): Promise<HostRecord> {
  const o = hostOptions(spec)
  const say = (phase: ProgressPhase, message: string): void => opts?.onProgress?.({ subject: `host ${spec.name}`, phase, message })
  const endpoint = endpointFor(env, o)
  const region = o.region
  const c = clientFor(env, region, endpoint)
  await rememberRegion(env, ctx, region, endpoint)

  // Adopt the instance of an earlier (interrupted) run.
  let inst = (await findInstances(c, region, ctx, spec.name)).find(i => LIVE.has(i.State?.Name ?? ''))
  if (inst === undefined) inst = await launch(env, c, ctx, spec, o, opts)
  else say('adopt', `adopting instance ${inst.InstanceId ?? ''} (${inst.State?.Name ?? ''})`)
  const instanceId = inst?.InstanceId
  if (instanceId === undefined) throw new Ec2Error('SC_EC2_API', `RunInstances for host ${spec.name} returned no instance`)
  const running = await waitForState(env, c, region, spec.name, instanceId, 'running', opts)
  if (running === undefined || (running.PublicIpAddress === undefined && running.PrivateIpAddress === undefined)) {
    throw new Ec2Error('SC_EC2_INSTANCE', `instance ${instanceId} of host ${spec.name} runs without an IP address`)
  }
  const record = recordOf(ctx, spec, o, running, endpoint, env.sshNetns)
  let report: HostReport
  try {
    report = await waitReady(env, ctx, c, record, opts)
  } catch (err) {
    if (err instanceof Ec2Error && err.code === 'SC_EC2_UNREACHABLE') {
      // Never leave an instance nobody can use running (and billing).
      say('destroy', `terminating unreachable instance ${instanceId}`)
      await terminate(env, c, region, spec.name, [instanceId], opts).catch(() => {})
    }
    throw err
  }
  const data = record.driverData as unknown as Ec2HostData
  data.hypervisor = report.hypervisor
  data.hypervisorReason = report.reason
  say('ready', `instance ${instanceId} at ${record.ssh.host}, hypervisor ${report.hypervisor} (${report.reason})`)
  return record
}

/** Checks the AMI, makes the region's network and runs one instance for the host. */
async function launch (env: Ec2Env, c: EC2Client, ctx: DriverContext, spec: HostSpec, o: Ec2HostOptions, opts?: OperationOptions): Promise<Instance | undefined> {
  const say = (phase: ProgressPhase, message: string): void => opts?.onProgress?.({ subject: `host ${spec.name}`, phase, message })
  const region = o.region
  const id: Ec2Identity = { name: ctx.name, prefix: ctx.prefix }
  const regionSpecs = [...(specsByRegion(ctx).get(region) ?? []), o]
  say('image', `checking AMI ${o.ami} in ${region}`)
  await call(c, region, `looking up AMI ${o.ami}`, async c => await c.send(new DescribeImagesCommand({ ImageIds: [o.ami] })), o.ami)
    .then(out => { if ((out.Images ?? []).length === 0) throw mapEc2Error(Object.assign(new Error('no such image'), { name: 'InvalidAMIID.NotFound', $metadata: {} }), { region, doing: 'checking the AMI', ami: o.ami }) })
  const net = await ensureRegion(env, ctx, region, regionSpecs, opts)
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
    ...(o.spot === true ? { InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate', ...(o.spotPool?.maxPrice !== undefined ? { MaxPrice: o.spotPool.maxPrice.toFixed(6) } : {}) } } } : {})
  }
  say('launch', `launching ${o.spot === true ? 'spot ' : ''}${o.instanceType}${o.spotPool?.maxPrice !== undefined ? ` (at most $${o.spotPool.maxPrice}/h)` : ''} from ${o.ami} in ${region}`)
  const out = await call(c, region, `launching host ${spec.name}`, async c => await c.send(new RunInstancesCommand(input)), o.ami)
  return out.Instances?.[0]
}

/**
 * The host key fingerprints cloud-init printed on the instance's console (GetConsoleOutput,
 * base64), or undefined while the block is not there yet.
 */
async function consoleHostKeys (c: EC2Client, region: string, instanceId: string): Promise<string[] | undefined> {
  const out = await call(c, region, `reading the console output of ${instanceId}`, async c => await c.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true })))
  const fps = consoleFingerprints(Buffer.from(out.Output ?? '', 'base64').toString('utf8'))
  return fps.length > 0 ? fps : undefined
}

/**
 * Waits until the instance's console shows its host key fingerprints (the only key SSH then
 * accepts), the host answers SSH and its bootstrap report is there.
 */
async function waitReady (env: Ec2Env, ctx: DriverContext, c: EC2Client, record: HostRecord, opts?: OperationOptions): Promise<HostReport> {
  const instanceId = (record.driverData as unknown as Ec2HostData).instanceId
  const what = `waiting for host ${record.name}`
  const start = Date.now()
  const reachTimeout = env.opts.reachTimeoutMs ?? 5 * 60000
  const bootTimeout = env.opts.bootstrapTimeoutMs ?? 20 * 60000
  let reachedAt: number | undefined
  let lastError = ''
  let said = ''
  const say = (phase: ProgressPhase, message: string): void => {
    if (message === said) return
    said = message
    opts?.onProgress?.({ subject: `host ${record.name}`, phase, message })
  }
  for (;;) {
    throwIfAborted(opts?.signal, what)
    try {
      if (record.ssh.hostKeys === undefined) {
        const fingerprints = await consoleHostKeys(c, (record.driverData as unknown as Ec2HostData).region, instanceId)
        if (fingerprints === undefined) throw new Error('the instance console shows no SSH host key fingerprints yet')
        record.ssh.hostKeys = { fingerprints, source: `the console output of instance ${instanceId}` }
        say('ssh', `host key ${fingerprints.join(', ')} (from the instance console)`)
      }
      const conn = await SshConnection.connect(record.name, record.ssh, { timeoutMs: 10000, ...(opts?.signal !== undefined ? { signal: opts.signal } : {}), ...(ctx.hostKeys !== undefined ? { pins: ctx.hostKeys } : {}) })
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
      // A key other than the console's is someone else: stop.
      if (err instanceof CancelledError || err instanceof HostKeyMismatchError || err instanceof Ec2Error) throw err
      lastError = err instanceof Error ? err.message : String(err)
      say('ssh', `waiting for SSH on ${record.ssh.host}:${record.ssh.port}`)
    }
    if (reachedAt === undefined && Date.now() - start > reachTimeout) {
      throw new Ec2Error('SC_EC2_UNREACHABLE', `host ${record.name} (${(record.driverData as unknown as Ec2HostData).instanceId}) did not answer SSH on ${record.ssh.host}:22 within ${Math.round(reachTimeout / 1000)} s (last: ${lastError}); check that ${record.ssh.host} is reachable from here and the security group's SSH source (ec2.sshFrom) is your address`)
    }
    if (reachedAt !== undefined && Date.now() - reachedAt > bootTimeout) {
      throw new Ec2Error('SC_EC2_UNREACHABLE', `host ${record.name} answers SSH but its bootstrap did not finish within ${Math.round(bootTimeout / 1000)} s; its console output (EC2 console, /var/log/cloud-init-output.log) says why`)
    }
    await sleep(env.pollMs, opts?.signal, what)
  }
}
