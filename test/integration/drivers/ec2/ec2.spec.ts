/**
 * The ec2 driver through the real AWS SDK client against the fake EC2 server, whose
 * instances are local hosts (namespace + sshd) with public addresses on the fake's own
 * internet (a namespace), reached from its namespace (sshNetns). No AWS account; nothing
 * leaves loopback and the namespaces.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, EC2Client } from '@aws-sdk/client-ec2'
import { createEc2Driver, type Ec2DriverOptions, type Ec2HostData } from '../../../../drivers/ec2/driver.ts'
import { FAKE_AMI } from '../../../../drivers/ec2/fake-server/server.ts'
import { resourceName } from '../../../../drivers/ec2/plan.ts'
import { nsExists } from '../../../../drivers/local/netns.ts'
import type { LocalHostData } from '../../../../drivers/local/driver.ts'
import type { DriverContext, HostRecord } from '../../../../drivers/cloud.ts'
import { hostStateDir } from '../../../../drivers/host-bootstrap/cloud-init.ts'
import { runCloudDriverCompliance, sshRun } from '../cloud-driver.compliance.ts'
import { testContext } from '../helpers.ts'
import { ec2Host, startFakeEc2, useFakeAwsEnvironment } from './fake-ec2.ts'

useFakeAwsEnvironment()
const fake = await startFakeEc2(t)

function driverOf (extra: Ec2DriverOptions = {}): ReturnType<typeof createEc2Driver> {
  return createEc2Driver({ endpoint: fake.endpoint, checkIpUrl: `${fake.endpoint}/checkip`, sshNetns: fake.sshNetns, pollMs: 100, reachTimeoutMs: 30000, bootstrapTimeoutMs: 60000, ...extra })
}

/** A supercloud context with one ec2 site and the given hosts; its EC2 resources are removed at teardown. */
async function ec2Context (hosts: ReturnType<typeof ec2Host>[]): Promise<DriverContext> {
  const ctx = await testContext(t, { aws: { name: 'aws' } })
  ctx.hosts = Object.fromEntries(hosts.map(h => [h.name, h]))
  t.teardown(async () => { await driverOf().destroyNetwork(ctx).catch(() => {}) })
  return ctx
}

function live (ctx: DriverContext): ReturnType<typeof fake.instances> {
  return fake.instances().filter(i => i.tags['supercloud:prefix'] === ctx.prefix && i.state !== 'terminated')
}

const sdk = new EC2Client({ region: 'us-east-1', endpoint: fake.endpoint })
t.teardown(() => { sdk.destroy() })

runCloudDriverCompliance(t, {
  driver: driverOf(),
  makeContext: async () => await ec2Context([ec2Host('h1', 'aws')]),
  makeHostSpec: ctx => ctx.hosts?.h1 ?? ec2Host('h1', 'aws'),
  assertGone: async (t, record) => {
    const id = (record.driverData as unknown as Ec2HostData).instanceId
    t.equal(fake.instances().find(i => i.id === id)?.state, 'terminated', 'the instance is terminated')
    t.equal(fake.hostOf(id), undefined, 'its local host is gone')
  }
})

t.test('the host: bootstrap ran, tags, record', async t => {
  const spec = ec2Host('web1', 'aws')
  const ctx = await ec2Context([spec])
  const driver = driverOf()
  const r = await driver.createHost(ctx, spec)
  const d = r.driverData as unknown as Ec2HostData
  t.equal(r.driver, 'ec2')
  t.equal(r.stateDir, hostStateDir(ctx.name, 'web1'), 'state dir is /var/lib/supercloud/<supercloud>/<host>')
  t.equal(r.guestBridge, 'scbr0')
  t.match(r.address, /^198\.18\.200\.\d+$/, 'address is the private address')
  t.match(r.ssh.host, /^198\.18\.232\.\d+$/, 'SSH goes to the public address')
  t.equal(r.ssh.host, d.publicIp)
  t.same(r.reach, { network: `ec2 ${fake.endpoint} us-east-1 ${fake.subnetOf('us-east-1')?.vpcId ?? ''}`, publicAddress: d.publicIp }, 'other networks reach it at its public address')
  t.equal(r.ssh.username, 'root')
  t.ok(d.hypervisor === 'kvm' || d.hypervisor === 'tcg', `bootstrap reported hypervisor ${d.hypervisor} (${d.hypervisorReason})`)
  t.match(await sshRun(r, 'ip -o link show scbr0'), /scbr0/, 'the bootstrap made the guest bridge')
  t.match(await sshRun(r, `cat ${r.stateDir}/host-image.json`), /"host":"web1"/, 'the bootstrap report is in the state dir')
  const inst = fake.instances().find(i => i.id === d.instanceId)
  t.same(inst?.tags, { supercloud: ctx.name, 'supercloud:prefix': ctx.prefix, 'supercloud:host': 'web1', Name: `${resourceName(ctx)}-web1` }, 'the instance carries the tags')
  t.equal(inst?.userDataExit, 0, 'user-data exited 0')
  t.equal(inst?.keyName, resourceName(ctx), 'launched with the supercloud key pair')
  const sandboxKeys = await readFile(join(fake.opts.dir, 'instances', d.instanceId, 'root', 'root', '.ssh', 'authorized_keys'), 'utf8')
  t.equal(sandboxKeys.trim(), (await readFile(`${ctx.keyPath}.pub`, 'utf8')).trim(), 'user-data authorized the supercloud key for root')
  const keys = await sdk.send(new DescribeKeyPairsCommand({ KeyNames: [resourceName(ctx)] }))
  t.same(keys.KeyPairs?.[0]?.Tags?.find(x => x.Key === 'supercloud:prefix')?.Value, ctx.prefix, 'the key pair is tagged')
  await driver.destroyHost(ctx, r)
  t.notOk(await stat(r.stateDir).then(() => true, () => false), 'the instance\'s files went with it')
})

t.test('security group rules', async t => {
  const ctx = await ec2Context([ec2Host('a', 'aws')])
  const driver = driverOf()
  await driver.ensureNetwork(ctx)
  const out = await sdk.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: [resourceName(ctx)] }] }))
  const g = out.SecurityGroups?.[0]
  t.ok(g?.GroupId, 'the group exists')
  t.same(g?.Tags?.find(x => x.Key === 'supercloud')?.Value, ctx.name, 'the group is tagged')
  const rules = (g?.IpPermissions ?? []).map(p => ({
    proto: p.IpProtocol, from: p.FromPort, to: p.ToPort,
    cidrs: (p.IpRanges ?? []).map(r => r.CidrIp), groups: (p.UserIdGroupPairs ?? []).map(x => x.GroupId)
  })).sort((a, b) => (a.from ?? 0) - (b.from ?? 0))
  t.same(rules, [
    { proto: 'tcp', from: 22, to: 22, cidrs: [`${fake.publicAddress}/32`], groups: [] },
    { proto: 'udp', from: 1194, to: 1257, cidrs: [`${fake.publicAddress}/32`], groups: [g?.GroupId] },
    { proto: 'udp', from: 4789, to: 4789, cidrs: [], groups: [g?.GroupId] },
    { proto: 'tcp', from: 49152, to: 49215, cidrs: [], groups: [g?.GroupId] }
  ], 'SSH only from the operator\'s address as seen; extenders from the group and the operator\'s address; VXLAN, migration only from the group itself')

  // An explicit sshFrom replaces the detected address.
  ctx.hosts = { a: ec2Host('a', 'aws', { sshFrom: '198.51.100.7' }) }
  await driver.ensureNetwork(ctx)
  const again = await sdk.send(new DescribeSecurityGroupsCommand({ GroupIds: [g?.GroupId ?? ''] }))
  const ssh = again.SecurityGroups?.[0]?.IpPermissions?.filter(p => p.FromPort === 22)
  t.same(ssh?.flatMap(p => (p.IpRanges ?? []).map(r => r.CidrIp)), ['198.51.100.7/32'], 'SSH now only from the given address')
  t.equal(again.SecurityGroups?.[0]?.IpPermissions?.length, 4, 'still four rules')
})

/** Runs argv; its stdout, '' when it fails or times out. */
async function output (argv: string[], timeoutMs: number, input = ''): Promise<string> {
  return await new Promise(resolve => {
    const child = spawn(argv[0] ?? 'false', argv.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] })
    let out = ''
    const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
    child.stdout.on('data', (d: Buffer) => { out += d.toString() })
    child.on('close', () => { clearTimeout(timer); resolve(out) })
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}

t.test('the internet: the public address is NATed to the instance and filtered by its security group', async t => {
  const spec = ec2Host('net1', 'aws')
  const ctx = await ec2Context([spec])
  const driver = driverOf()
  const r = await driver.createHost(ctx, spec)
  t.teardown(async () => { await driver.destroyHost(ctx, r).catch(() => {}) })
  const d = r.driverData as unknown as Ec2HostData
  const ns = (fake.hostOf(d.instanceId)?.driverData as unknown as LocalHostData).ns
  const inet = ['ip', 'netns', 'exec', fake.sshNetns]
  /** Whether a datagram from this machine's public address to the instance's public address and `port` arrives. */
  const udpArrives = async (port: number): Promise<boolean> => {
    const got = output(['ip', 'netns', 'exec', ns, 'timeout', '4', 'socat', '-u', `UDP-RECV:${port},bind=${d.privateIp}`, '-'], 5000)
    await new Promise(resolve => setTimeout(resolve, 500))
    for (let i = 0; i < 3; i++) await output([...inet, 'socat', '-u', '-', `UDP-SENDTO:${d.publicIp ?? ''}:${port}`], 2000, `hello ${port}\n`)
    return (await got).includes(`hello ${port}`)
  }
  t.ok(await udpArrives(1194), 'the extender port is open to the operator\'s address')
  t.notOk(await udpArrives(4789), 'the VXLAN port is not (only the group itself)')
  const banner = async (): Promise<string> => await output([...inet, 'socat', '-T', '3', '-', `TCP:${d.publicIp ?? ''}:22,connect-timeout=3`], 4000)
  t.match(await banner(), /^SSH-/, 'SSH answers from the operator\'s address')
  ctx.hosts = { net1: ec2Host('net1', 'aws', { sshFrom: '198.51.100.7' }) }
  await driver.ensureNetwork(ctx)
  t.equal(await banner(), '', 'with SSH allowed from elsewhere only, it no longer answers')
})

t.test('missing credentials: SC_EC2_CREDENTIALS', async t => {
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY }
  t.teardown(() => { process.env.AWS_ACCESS_KEY_ID = saved.id; process.env.AWS_SECRET_ACCESS_KEY = saved.secret })
  const ctx = await ec2Context([ec2Host('a', 'aws')])
  delete process.env.AWS_ACCESS_KEY_ID
  delete process.env.AWS_SECRET_ACCESS_KEY
  const err = await driverOf().createHost(ctx, ec2Host('a', 'aws')).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'SC_EC2_CREDENTIALS' }, 'typed error')
  t.match((err as Error).message, /AWS_PROFILE/, 'the message says how to configure the credential chain')

  process.env.AWS_ACCESS_KEY_ID = 'AKIANOTKNOWNTOTHEFAKE'
  process.env.AWS_SECRET_ACCESS_KEY = 'whatever'
  const err2 = await driverOf().createHost(ctx, ec2Host('a', 'aws')).then(() => undefined, (e: unknown) => e)
  t.match(err2, { code: 'SC_EC2_CREDENTIALS', awsCode: 'AuthFailure' }, 'an unknown access key is SC_EC2_CREDENTIALS too')
  process.env.AWS_ACCESS_KEY_ID = saved.id
  process.env.AWS_SECRET_ACCESS_KEY = 'a-wrong-secret'
  const err3 = await driverOf().createHost(ctx, ec2Host('a', 'aws')).then(() => undefined, (e: unknown) => e)
  t.match(err3, { code: 'SC_EC2_CREDENTIALS' }, 'a wrong secret (bad signature) too')
  t.same(live(ctx), [], 'nothing launched')
})

t.test('a region without the AMI: SC_EC2_AMI_NOT_FOUND', async t => {
  const spec = ec2Host('eu1', 'aws', { region: 'eu-west-1' })
  const ctx = await ec2Context([spec])
  fake.inject.removeImage('eu-west-1', FAKE_AMI)
  t.teardown(() => { fake.inject.addImage('eu-west-1', FAKE_AMI) })
  const err = await driverOf().createHost(ctx, spec).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'SC_EC2_AMI_NOT_FOUND' })
  t.match((err as Error).message, new RegExp(`AMI ${FAKE_AMI} does not exist in region eu-west-1`), 'names the AMI and the region')
  t.same(live(ctx), [], 'nothing launched')
})

t.test('quota exceeded: SC_EC2_QUOTA, nothing left running', async t => {
  const spec = ec2Host('q1', 'aws')
  const ctx = await ec2Context([spec])
  fake.inject.quota(1)
  const err = await driverOf().createHost(ctx, spec).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'SC_EC2_QUOTA', awsCode: 'InstanceLimitExceeded' })
  t.same(live(ctx), [], 'no instance of the supercloud runs')
})

t.test('throttling: retried with backoff; SC_EC2_THROTTLED when it persists', async t => {
  const spec = ec2Host('th1', 'aws', { spot: true })
  const ctx = await ec2Context([spec])
  const driver = driverOf()
  await driver.ensureNetwork(ctx)
  const before = fake.requests.length
  fake.inject.throttle(2, 'RunInstances')
  const r = await driver.createHost(ctx, spec)
  const seen = fake.requests.slice(before).filter(x => x.action === 'RunInstances').map(x => x.code ?? 'ok')
  t.same(seen, ['RequestLimitExceeded', 'RequestLimitExceeded', 'ok'], 'two throttled attempts, then success')
  t.equal(live(ctx).length, 1, 'exactly one instance (retries reuse the idempotency token)')
  t.equal(live(ctx)[0]?.spot, true, 'spot: true launches a spot instance')
  await driver.destroyHost(ctx, r)

  fake.inject.throttle(50)
  t.teardown(() => { fake.inject.clear() })
  const err = await driverOf({ maxAttempts: 2 }).createHost(ctx, ec2Host('th2', 'aws')).then(() => undefined, (e: unknown) => e)
  fake.inject.clear()
  t.match(err, { code: 'SC_EC2_THROTTLED' }, 'throttled beyond the retries: SC_EC2_THROTTLED')
})

t.test('an instance that never becomes reachable is terminated', async t => {
  const spec = ec2Host('dark', 'aws')
  const ctx = await ec2Context([spec])
  fake.inject.unreachable(1)
  const phases: string[] = []
  const err = await driverOf({ reachTimeoutMs: 1500 }).createHost(ctx, spec, { onProgress: ev => phases.push(`${ev.phase}: ${ev.message}`) }).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'SC_EC2_UNREACHABLE' })
  const mine = fake.instances().filter(i => i.tags['supercloud:prefix'] === ctx.prefix)
  t.equal(mine.length, 1, 'one instance was launched')
  t.equal(mine[0]?.state, 'terminated', 'and terminated, not leaked')
  t.ok(phases.some(p => p.startsWith('ssh:')), 'progress said it was waiting for SSH')
})

t.test('down after a partial up finds instances by tag', async t => {
  const a = ec2Host('pa', 'aws')
  const b = ec2Host('pb', 'aws')
  const ctx = await ec2Context([a, b])
  // An `up` interrupted after RunInstances: the instances exist, their ids were never recorded.
  for (const spec of [a, b]) {
    const ac = new AbortController()
    const p = driverOf().createHost(ctx, spec, { signal: ac.signal, onProgress: ev => { if (ev.phase === 'launch' && ev.message.startsWith('instance')) ac.abort() } })
    await t.rejects(p, { code: 'SC_CANCELLED' }, `creating ${spec.name} interrupted after launch`)
  }
  t.equal(live(ctx).length, 2, 'two instances were left behind')
  await fake.settled()
  const driver = driverOf()
  const bare: HostRecord = { name: 'pa', site: 'aws', driver: 'ec2', address: '', ssh: { host: '', port: 22, username: 'root', privateKeyPath: ctx.keyPath }, stateDir: '', guestBridge: '', driverData: {} }
  t.equal(await driver.describeHost(ctx, bare), 'running', 'describeHost finds it by tag')
  await driver.destroyHost(ctx, bare)
  t.same(live(ctx).map(i => i.tags['supercloud:host']), ['pb'], 'destroyHost without an instance id terminated host pa by tag')
  await driver.destroyNetwork(ctx)
  t.same(live(ctx), [], 'destroyNetwork terminated the unrecorded pb too')
  t.notOk(fake.securityGroups().some(g => g.tags['supercloud:prefix'] === ctx.prefix), 'security group deleted')
  t.notOk(fake.keyPairs().some(k => k.tags['supercloud:prefix'] === ctx.prefix), 'key pair deleted')
  await fake.settled()
  for (const i of fake.instances().filter(x => x.tags['supercloud:prefix'] === ctx.prefix)) {
    const ns = (fake.hostOf(i.id)?.driverData as unknown as LocalHostData | undefined)?.ns
    t.equal(ns, undefined, `no local host behind ${i.id}`)
  }
  t.notOk(await nsExists(`${fake.opts.prefix}-h-${live(ctx)[0]?.id ?? 'none'}`), 'no namespace left')
})
