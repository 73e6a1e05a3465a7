/**
 * A mixed supercloud through the real CLI: one `local` site and one `ec2` site whose hosts
 * are instances of the fake EC2 server (drivers/ec2/fake-server: the EC2 Query API over
 * loopback, instances are local hosts). `up`, `status`, a guest on an ec2 host answering on
 * its console, a VirtualWire wire between guests of two ec2 hosts, a wire between a guest of
 * the local site and a guest of the ec2 site through the extenders, `cost` (the spot host at
 * the fake's spot price), a spot interruption of aws2 that `serve` evacuates before the
 * reclaim (the rebalance recommendation starts it, the notice hurries it; cloud2 to aws1,
 * cloud3, with no room left, to an on-demand replacement host serve launches; the VMs keep
 * their memory and wires; aws2 forgotten once reclaimed), `down` leaving
 * nothing in the fake server or on this machine; and `down` after an `up` killed (-9) while
 * its instance was being created.
 *
 * How the two sites meet, as in a real deployment (docs/ec2.md, "Try it without AWS"): the
 * fake's instances have private addresses on its region subnet (198.18.200.0/24) and public
 * ones on the fake's internet (198.18.232.0/24, a namespace), NATed 1:1 and filtered by the
 * security group. This machine sits behind an edge NAT on that internet (public address
 * 198.18.232.1): the CLI's SSH to the instances runs from there (SUPERCLOUD_EC2_SSH_NETNS),
 * and the supercloud's local-driver WAN joins the edge's LAN (SUPERCLOUD_LOCAL_UPLINK), so
 * the local site's extender gateway reaches the ec2 gateway's public address outward, and
 * the ec2 gateway answers to the edge's address, which the security group lets in on the
 * extender ports (the operator's address). The ec2 site's `subnet` is the region subnet, so
 * extender routes send traffic for it through the tunnel.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { DescribeInstancesCommand, DescribeKeyPairsCommand, DescribeSecurityGroupsCommand, EC2Client } from '@aws-sdk/client-ec2'
import { FAKE_ACCESS_KEY_ID, FAKE_AMI, FAKE_SECRET_ACCESS_KEY } from '../../../drivers/ec2/fake-server/server.ts'
import { sandbox } from '../../helpers/cli.ts'
import { leftovers } from '../../helpers/sweep-lib.ts'
import { startFakeEc2 } from '../../integration/drivers/ec2/fake-ec2.ts'
import type { StatusReport } from '../../../blanket-manager/controller/index.ts'

// Torn down last (teardowns run in reverse order): the sandboxes' `down` still reaches it.
const fake = await startFakeEc2(t)
const fakePrefix = fake.opts.prefix

/** What the CLI needs to use the fake server: its test key, no profiles, no instance metadata. */
const awsEnv: NodeJS.ProcessEnv = {
  AWS_ACCESS_KEY_ID: FAKE_ACCESS_KEY_ID,
  AWS_SECRET_ACCESS_KEY: FAKE_SECRET_ACCESS_KEY,
  AWS_SESSION_TOKEN: '',
  AWS_PROFILE: '',
  AWS_CONFIG_FILE: '/nonexistent/supercloud-test/aws-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/supercloud-test/aws-credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  SUPERCLOUD_CHECKIP_URL: `${fake.endpoint}/checkip`,
  // This machine reaches the fake's internet (the instances' public addresses) from its namespace.
  SUPERCLOUD_EC2_SSH_NETNS: fake.sshNetns
}

const sdk = new EC2Client({ region: 'us-east-1', endpoint: fake.endpoint, credentials: { accessKeyId: FAKE_ACCESS_KEY_ID, secretAccessKey: FAKE_SECRET_ACCESS_KEY } })
t.teardown(() => { sdk.destroy() })

/** What the fake server holds for a supercloud prefix, as the EC2 API reports it. */
async function inFake (prefix: string): Promise<{ live: string[], groups: string[], keys: string[] }> {
  const tag = [{ Name: 'tag:supercloud:prefix', Values: [prefix] }]
  const inst = await sdk.send(new DescribeInstancesCommand({ Filters: tag }))
  const live = (inst.Reservations ?? []).flatMap(r => r.Instances ?? []).filter(i => i.State?.Name !== 'terminated').map(i => `${i.InstanceId ?? '?'} ${i.State?.Name ?? '?'}`)
  const groups = ((await sdk.send(new DescribeSecurityGroupsCommand({ Filters: tag }))).SecurityGroups ?? []).map(g => g.GroupName ?? '?')
  const keys = ((await sdk.send(new DescribeKeyPairsCommand({ Filters: tag }))).KeyPairs ?? []).map(k => k.KeyName ?? '?')
  return { live, groups, keys }
}

/** The fake's instances are namespaces `<fake prefix>-h-…`; its own sites and WAN stay until it stops. */
function fakeHostLeftovers (): { namespaces: string[], processes: string[] } {
  const l = leftovers(`${fakePrefix}-h-`)
  return { namespaces: l.namespaces, processes: l.processes }
}

const ec2Host = (cpus: number, memory: string, spot = ''): string =>
  `{ site: aws, driver: ec2, cpus: ${cpus}, memory: ${memory}, hypervisor: { accel: tcg }, ec2: { region: us-east-1, ami: ${FAKE_AMI}, instanceType: t3.small, endpoint: "${fake.endpoint}"${spot !== '' ? `, spot: ${spot}` : ''} } }`

/**
 * The spot reclaim, scaled down (test knobs): EC2 gives 120 s of notice, this test NOTICE_S; the
 * agents poll the instance metadata every second (SUPERCLOUD_IMDS_INTERVAL_MS) instead of every 5 s.
 */
const NOTICE_S = 90
const IMDS_POLL_MS = '1000'

/** Runs `curl` in an instance's namespace against its metadata service (IMDSv2): body and status (not blocking: the fake server runs in this process). */
async function imdsFrom (ns: string, path: string): Promise<string> {
  return (await promisify(execFile)('ip', ['netns', 'exec', ns, 'sh', '-c',
    `T=$(curl -sf -m 2 -X PUT -H 'x-aws-ec2-metadata-token-ttl-seconds: 60' http://169.254.169.254/latest/api/token) && curl -s -m 2 -w ' %{http_code}' -H "x-aws-ec2-metadata-token: $T" http://169.254.169.254/latest/meta-data/${path}`])).stdout
}

t.test('a local site and an ec2 site through the CLI', async t => {
  const name = 'ec2mixed'
  const sb = sandbox(t, `name: ${name}
sites:
  lab: { subnet: 198.18.60.0/24 }
  aws: { subnet: 198.18.200.0/24 }
hosts:
  local1: { site: lab, cpus: 1, memory: 160M, hypervisor: { accel: tcg } }
  aws1: ${ec2Host(1, '256M')}
  aws2: ${ec2Host(1, '384M', '{ instanceTypes: [t3a.small] }')}
images:
  tiny: { builtin: tiny }
vms:
  cloud1: { image: tiny, host: aws1, memory: 96M, nics: [ { address: 198.19.10.11/24 }, { address: 198.19.11.11/24 } ] }
  cloud2: { image: tiny, host: aws2, memory: 96M, nics: [ { address: 198.19.10.12/24 } ] }
  cloud3: { image: tiny, host: aws2, memory: 96M }
  lab1: { image: tiny, host: local1, memory: 96M, nics: [ { address: 198.19.11.13/24 } ] }
network:
  wires: [ cloud1.eth0 -- cloud2.eth0, lab1.eth0 -- cloud1.eth1 ]
  extenders:
    lab: { gateway: local1 }
    aws: { gateway: aws1 }
`, name, { ...awsEnv, SUPERCLOUD_LOCAL_UPLINK: fake.uplink(0), SUPERCLOUD_IMDS_INTERVAL_MS: IMDS_POLL_MS })

  t.test('cost prices the ec2 hosts before anything exists', async t => {
    const r = await sb.run(['cost'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /host aws1 {2}t3\.small us-east-1 {2}\$0\.0208\/h {2}1 VM\(s\)/)
    t.match(r.stdout, /host local1 {2}unpriced .*local host: not priced/)
    // aws2 is a spot host: priced at the fake's DescribeSpotPriceHistory answer (30% of on-demand).
    t.match(r.stdout, /host aws2 {2}t3\.small us-east-1 spot {2}\$0\.0062\/h {2}2 VM\(s\) {2}\(spot price; on-demand \$0\.0208\/h, saves 70%\)/)
    t.match(r.stdout, /vm cloud3 on aws2 {2}50\.0% {2}\$0\.0031\/h {2}\(on-demand \$0\.0104\/h\)/, 'each VM\'s share at spot and on demand')
    t.match(r.stdout, /total \$0\.0270\/h \(on demand \$0\.0416\/h: spot saves \$0\.0146\/h, 35%\)/)
    t.equal(sb.prefix(name), undefined, 'cost made no state')
  })

  t.test('up succeeds', async t => {
    const r = await sb.run(['up'], { timeoutMs: 480000 })
    t.equal(r.code, 0, `up exits 0\n${r.stderr}`)
    t.match(r.stderr, /host aws1 +launch: instance i-[0-9a-f]+ is running/)
    t.match(r.stderr, /host aws1 +ready: instance i-[0-9a-f]+ at 198\.18\.232\.\d+/, 'reached at its public address on the fake internet')
    t.match(r.stderr, /aws \(aws1 at 198\.18\.232\.\d+\) <-> lab \(local1 at 198\.18\.232\.1\) over OpenVPN/, 'the extender ends reach each other at public addresses (the local site behind this machine\'s edge NAT)')
    const p = sb.prefix(name) ?? ''
    const f = await inFake(p)
    t.equal(f.live.length, 2, 'two instances of ours run in the fake server')
    t.same([f.groups, f.keys], [[`supercloud-${name}-${p}`], [`supercloud-${name}-${p}`]], 'with our security group and key pair')
  })

  t.test('status --json: both hosts and all guests running', async t => {
    const r = await sb.run(['status', '--json'])
    t.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout) as StatusReport
    t.same(s.hosts.map(h => [h.name, h.driver, h.status, h.health]).sort(), [
      ['aws1', 'ec2', 'ready', 'running'], ['aws2', 'ec2', 'ready', 'running'], ['local1', 'local', 'ready', 'running']
    ])
    t.match(s.hosts.find(h => h.name === 'aws1')?.address, /^198\.18\.200\.\d+$/, 'an ec2 host is recorded at its private address')
    t.same(s.vms.map(v => [v.name, v.host, v.state]).sort(), [['cloud1', 'aws1', 'running'], ['cloud2', 'aws2', 'running'], ['cloud3', 'aws2', 'running'], ['lab1', 'local1', 'running']])
  })

  t.test('the guest on the ec2 host answers on its console', async t => {
    const r = await sb.run(['console', 'cloud1', '--run', 'echo ok'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /^ok$/m)
    const lab = await sb.run(['console', 'lab1', '--run', 'echo ok'])
    t.equal(lab.code, 0, lab.stderr)
  })

  t.test('the wire joins the guests of the two ec2 hosts', async t => {
    const r = await sb.run(['console', 'cloud1', '--run', 'ping -c 2 -W 5 198.19.10.12', '--timeout', '60'])
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.match(r.stdout, /2 packets transmitted, 2 (packets )?received/)
  })

  t.test('the wire joins the local guest and the ec2 guest across the sites, through the extenders', async t => {
    const r = await sb.run(['console', 'lab1', '--run', 'ping -c 2 -W 5 198.19.11.11', '--timeout', '90'])
    t.equal(r.code, 0, r.stdout + r.stderr)
    t.match(r.stdout, /2 packets transmitted, 2 (packets )?received/)
    const back = await sb.run(['console', 'cloud1', '--run', 'ping -c 2 -W 5 198.19.11.13', '--timeout', '60'])
    t.equal(back.code, 0, back.stdout + back.stderr)
    t.match(back.stdout, /2 packets transmitted, 2 (packets )?received/)
    const w = await sb.run(['wire', 'list', '--json'])
    t.same((JSON.parse(w.stdout) as Array<{ hosts: string[], mode: string }>).map(x => [[...x.hosts].sort(), x.mode]).sort(),
      [[['aws1', 'aws2'], 'encapsulated'], [['aws1', 'local1'], 'encapsulated']])
  })

  t.test(`a spot interruption (${NOTICE_S} s notice): serve moves cloud2 to aws1, and cloud3, with no room left, to a replacement host it launches, before EC2 reclaims aws2`, async t => {
    const inGuest = async (vm: string, cmd: string): Promise<string> => {
      const r = await sb.run(['console', vm, '--run', cmd, '--timeout', '60'])
      t.equal(r.code, 0, `${vm}: ${cmd}\n${r.stdout}${r.stderr}`)
      return r.stdout
    }
    const sums: Record<string, string> = {}
    for (const vm of ['cloud2', 'cloud3']) {
      // 8 MiB of random data in the guest's RAM (its root is an initramfs): it moves with the memory.
      const out = await inGuest(vm, 'dd if=/dev/urandom of=/tmp/blob bs=1M count=8 2>/dev/null; md5sum /tmp/blob')
      sums[vm] = /^([0-9a-f]{32})\s+\/tmp\/blob/m.exec(out)?.[1] ?? ''
      t.match(sums[vm], /^[0-9a-f]{32}$/, `${vm} holds 8 MiB of known memory`)
    }
    const p = sb.prefix(name) ?? ''
    const inst = fake.instances().find(i => i.tags['supercloud:prefix'] === p && i.tags['supercloud:host'] === 'aws2' && i.state === 'running')
    t.equal(inst?.spot, true, 'aws2 is a spot instance')
    const ns = (fake.hostOf(inst?.id ?? '')?.driverData as { ns?: string } | undefined)?.ns ?? ''
    t.match(await imdsFrom(ns, 'spot/instance-action'), / 404$/, 'its metadata at 169.254.169.254 in its namespace: no notice yet')

    const serve = sb.start(['serve', '--listen', '127.0.0.1:0', '--interval', '0'])
    serve.stdin?.end()
    let log = ''
    const seen = async (re: RegExp, ms: number): Promise<RegExpExecArray | null> => await new Promise(resolve => {
      const check = (): void => { const m = re.exec(log); if (m !== null) { clearInterval(timer); clearTimeout(limit); resolve(m) } }
      const timer = setInterval(check, 200)
      const limit = setTimeout(() => { clearInterval(timer); resolve(re.exec(log)) }, ms)
      check()
    })
    serve.stderr?.on('data', (d: Buffer) => { log += d.toString() })
    const exited = new Promise(resolve => serve.on('exit', resolve))
    t.teardown(async () => { serve.kill('SIGTERM'); await exited })
    t.ok(await seen(/interruptions: watching 2 ec2 host\(s\)/, 60000), `serve watches both ec2 hosts\n${log}`)

    // aws2's spot pool's other type has no capacity now: the replacement falls back to on-demand.
    fake.inject.spotCapacity('us-east-1', 't3a.small', false)
    const time = fake.inject.interrupt(inst?.id ?? '', NOTICE_S)
    const deadline = Date.parse(time)
    t.match(await imdsFrom(ns, 'spot/instance-action'), new RegExp(`^\\{"action":"terminate","time":"${time}"\\} 200$`), 'the notice in its metadata')
    const done = await seen(/interruptions: (aws2 evacuated: .*|evacuation of aws2 left .*)/, NOTICE_S * 1000 + 15000)
    const doneAt = Date.now()
    t.match(done?.[1], /^aws2 evacuated: cloud2 -> aws1, cloud3 -> aws2-r1$/, `cloud2 to aws1 (same size: by name), cloud3 to the replacement\n${log}`)
    t.ok(doneAt < deadline, `done ${Math.round((deadline - doneAt) / 1000)} s before the termination time`)
    // EC2 puts a rebalance recommendation with the notice (never after it): serve starts the
    // unhurried evacuation on it and the notice, a moment later, hurries that one: one operation.
    t.match(log, /interruptions: aws2 has a rebalance recommendation .*pre-copy, one at a time/)
    t.match(log, /interruptions: aws2 will be reclaimed \(terminate\) at \S+: hurrying its evacuation/)

    const s = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
    t.same(s.vms.filter(v => v.name.startsWith('cloud')).map(v => [v.name, v.host, v.state]).sort(), [['cloud1', 'aws1', 'running'], ['cloud2', 'aws1', 'running'], ['cloud3', 'aws2-r1', 'running']])
    const r1 = fake.instances().find(i => i.tags['supercloud:prefix'] === p && i.tags['supercloud:host'] === 'aws2-r1' && i.state === 'running')
    t.same([r1?.spot, r1?.instanceType], [false, 't3.small'], 'the replacement is an on-demand t3.small (the pool\'s t3a.small had no spot capacity)')
    for (const vm of ['cloud2', 'cloud3']) {
      const out = await inGuest(vm, 'md5sum /tmp/blob')
      t.equal(/^([0-9a-f]{32})\s+\/tmp\/blob/m.exec(out)?.[1], sums[vm], `${vm}: its memory arrived intact (checksum inside the guest)`)
    }
    const ping = await sb.run(['console', 'cloud1', '--run', 'ping -c 2 -W 5 198.19.10.12', '--timeout', '60'])
    t.match(ping.stdout, /2 packets transmitted, 2 (packets )?received/, 'the wire cloud1 -- cloud2 kept')
    const ev = (await sb.run(['events', '--json', '--limit', '500'])).stdout.trim().split('\n').map(l => JSON.parse(l) as { type: string, host?: string, data: Record<string, unknown> })
    t.ok(ev.some(e => e.type === 'host.interruption' && e.host === 'aws2' && e.data.deadline === new Date(time).toISOString()), 'host.interruption with the termination time in the event stream')
    t.ok(ev.some(e => e.type === 'operation.completed' && e.data.kind === 'evacuate'), 'the evacuation is an operation that completed')
    t.equal(ev.filter(e => e.type === 'operation.started' && e.data.kind === 'evacuate').length, 1, 'one evacuation: the notice hurried the one the recommendation started')
    t.ok(ev.some(e => e.type === 'operation.progress' && /plan.*cloud2 -> aws1.*cloud3: no host can take it/.test(String(e.data.message))), 'its plan said first, with cloud3 without room')
    const said = ev.filter(e => e.type === 'operation.progress').map(e => String(e.data.message)).join('\n')
    t.match(said, /launching replacement host aws2-r1 \(spot t3a\.small\)[\s\S]*aws2-r1 \(spot t3a\.small\) could not be launched: EC2 has no capacity[\s\S]*replacement host aws2-r1 \(on-demand t3\.small\) is ready[\s\S]*cloud3 -> aws2-r1/, 'the spot pool first, then on-demand')

    // EC2 reclaims the instance at the stated time: its namespace and every process in it go.
    const gone = await new Promise<boolean>(resolve => {
      const timer = setInterval(() => { if (fake.instances().find(i => i.id === inst?.id)?.state === 'terminated') { clearInterval(timer); resolve(true) } }, 500)
      setTimeout(() => { clearInterval(timer); resolve(false) }, Math.max(0, deadline - Date.now()) + 30000)
    })
    t.ok(gone, 'the instance was terminated')
    t.ok(Date.now() >= deadline, 'not before its time')
    t.equal(fake.instances().find(i => i.id === inst?.id)?.stateReason?.code, 'Server.SpotInstanceTermination')
    t.same(leftovers(ns), { namespaces: [], links: [], processes: [] }, 'its namespace and processes are gone')
    const after = await sb.run(['console', 'cloud2', '--run', 'echo ok', '--timeout', '60'])
    t.match(after.stdout, /^ok$/m, 'cloud2 runs on after the reclaim')
    // serve sees the instance gone (its driver) and forgets the host: status no longer lists it.
    t.ok(await seen(/interruptions: aws2 was reclaimed: removed from the state/, 30000), `serve forgot aws2\n${log}`)
    const s2 = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
    t.same(s2.hosts.map(h => h.name).sort(), ['aws1', 'aws2-r1', 'local1'], 'aws2 is no longer a host of the state; its replacement is')
  })

  t.test('down leaves nothing', async t => {
    const p = sb.prefix(name) ?? 'none'
    const r = await sb.run(['down'], { timeoutMs: 300000 })
    t.equal(r.code, 0, r.stderr)
    t.same(await inFake(p), { live: [], groups: [], keys: [] }, 'no instance running, no security group or key pair of ours')
    t.same(leftovers(p), { namespaces: [], links: [], processes: [] }, 'no namespace, link or process of the supercloud')
    t.same(fakeHostLeftovers(), { namespaces: [], processes: [] }, 'no instance namespace or sshd in the fake server')
  })
})

t.test('down after an up killed while its instance was being created', async t => {
  const name = 'ec2partial'
  const sb = sandbox(t, `name: ${name}
sites: { aws: {} }
hosts:
  aws1: ${ec2Host(1, '256M')}
images:
  tiny: { builtin: tiny }
vms:
  cloud1: { image: tiny, host: aws1, memory: 64M, nics: [ { address: 198.19.10.11/24 } ] }
`, name, awsEnv)
  const child = sb.start(['up'])
  child.stdin?.end()
  let stderr = ''
  const launched = await new Promise<boolean>(resolve => {
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (/launch: instance i-[0-9a-f]+ is pending/.test(stderr)) { child.kill('SIGKILL'); resolve(true) }
    })
    child.on('exit', () => resolve(false))
  })
  await new Promise(resolve => { if (child.exitCode !== null || child.signalCode !== null) resolve(undefined); else child.on('exit', resolve) })
  t.ok(launched, launched ? 'up was killed with its instance pending' : `up ended before launching an instance\n${stderr}`)
  const p = sb.prefix(name) ?? 'none'
  t.ok((await inFake(p)).live.length > 0, 'the killed up left a live instance (no host record points at it)')

  const r = await sb.run(['down'], { timeoutMs: 300000 })
  t.equal(r.code, 0, r.stderr)
  t.same(await inFake(p), { live: [], groups: [], keys: [] }, 'down terminated it and removed the group and key pair')
  t.same(leftovers(p), { namespaces: [], links: [], processes: [] })
  t.same(fakeHostLeftovers(), { namespaces: [], processes: [] }, 'the instance\'s local host is gone')
})

t.test('the fake server stops clean', async t => {
  await fake.stop()
  t.same(leftovers(fakePrefix), { namespaces: [], links: [], processes: [] })
})
