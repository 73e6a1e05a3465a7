import t from 'tap'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createLocalDriver, ensureSupercloudKey, hostSshdPids, listLeftovers, type LocalHostData } from '../../../drivers/local/driver.ts'
import { nsExists } from '../../../drivers/local/netns.ts'
import { run } from '../../../drivers/local/sh.ts'
import { SshConnection } from '../../../core/ssh.ts'
import { HostAuthError } from '../../../core/errors.ts'
import type { HostRecord } from '../../../drivers/cloud.ts'
import { runCloudDriverCompliance, sshRun } from './cloud-driver.compliance.ts'
import { localHost, site, testContext } from './helpers.ts'

const driver = createLocalDriver()

runCloudDriverCompliance(t, {
  driver,
  makeContext: async () => await testContext(t, { a: site('a', '198.18.10.0/24') }),
  makeHostSpec: () => localHost('h1', 'a'),
  countSshd: async record => (await hostSshdPids(record)).length,
  assertGone: async (t, record) => {
    const d = record.driverData as unknown as LocalHostData
    t.notOk(await nsExists(d.ns), 'the host namespace is deleted')
    t.notOk(await stat(d.hostDir).then(() => true, () => false), 'the host state dir is removed')
  }
})

function minRtt (pingOutput: string): number {
  const m = /min\/avg\/max = ([\d.]+)\//.exec(pingOutput)
  if (m?.[1] === undefined) throw new Error(`no ping summary in: ${pingOutput}`)
  return Number(m[1])
}

t.test('two sites joined by the WAN', async t => {
  const delayMs = 15
  const ctx = await testContext(t, { a: site('a', '198.18.20.0/24'), b: site('b', '198.18.21.0/24') }, { delayMs, bandwidthBps: 50_000_000 })
  const specs = [localHost('a1', 'a'), localHost('a2-long-host-name-x', 'a'), localHost('b1', 'b')]
  ctx.hosts = Object.fromEntries(specs.map(s => [s.name, s]))
  const records: HostRecord[] = []
  t.teardown(async () => {
    for (const r of records) await driver.destroyHost(ctx, r).catch(() => {})
    await driver.destroyNetwork(ctx).catch(() => {})
  })

  // createHost makes the network when missing; hosts are created in parallel, as `up` may.
  const made = await Promise.allSettled(specs.map(async s => await driver.createHost(ctx, s)))
  for (const m of made) if (m.status === 'fulfilled') records.push(m.value)
  for (const m of made) if (m.status === 'rejected') throw m.reason
  const [a1, a2, b1] = records as [HostRecord, HostRecord, HostRecord]
  const relayPids = await run(['ip', 'netns', 'pids', `${ctx.prefix}-wan`])
  t.equal(relayPids.stdout.trim().split('\n').length, 2, 'one relay and one socat in the WAN namespace')

  t.same(records.map(r => r.address), ['198.18.20.10', '198.18.20.11', '198.18.21.10'],
    'addresses come from the site subnets from .10, hosts in name order')
  for (const r of records) {
    const ns = (r.driverData as unknown as LocalHostData).ns
    t.ok(ns.startsWith(ctx.prefix) && ns.length <= 15, `namespace ${ns} carries the prefix and fits 15 characters`)
  }

  const same = await sshRun(a1, `busybox ping -c 2 -W 5 ${a2.address}`)
  t.match(same, /2 packets received/, 'a host reaches another host of its site')

  const out = await sshRun(a1, `busybox ping -c 3 -W 5 ${b1.address}`)
  t.match(out, /3 packets received/, 'a host in site a reaches a host in site b through the WAN')
  t.ok(minRtt(out) >= 2 * delayMs, `round trip across the WAN (${minRtt(out)} ms) includes the delay both ways (>= ${2 * delayMs} ms)`)

  const wanNs = `${ctx.prefix}-wan`
  const qdisc = await run(['ip', 'netns', 'exec', wanNs, 'tc', 'qdisc', 'show'])
  t.match(qdisc.stdout, /tbf .*rate 50Mbit/, 'the WAN shapes egress towards the sites with tbf')

  const otherKey = await ensureSupercloudKey(join(ctx.dir, 'other-key'))
  await t.rejects(SshConnection.connect('a1', { ...a1.ssh, privateKeyPath: otherKey }), HostAuthError, 'SSH with another key is refused')

  // An interrupted run: sshd died. describeHost notices, createHost repairs.
  const pidFile = (a1.driverData as unknown as LocalHostData).sshdPidFile
  process.kill(Number((await readFile(pidFile, 'utf8')).trim()), 'SIGKILL')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(await driver.describeHost(ctx, a1), 'unreachable', 'a host whose sshd died is unreachable')
  const repaired = await driver.createHost(ctx, specs[0] as (typeof specs)[0])
  t.equal(repaired.address, a1.address, 'createHost adopts the existing namespace')
  t.equal(await driver.describeHost(ctx, repaired), 'running', 'createHost restarted sshd')
  t.equal((await sshRun(repaired, 'echo back')).trim(), 'back', 'the repaired host is reachable')

  await driver.ensureNetwork(ctx)
  t.match(await sshRun(a1, `busybox ping -c 1 -W 5 ${b1.address}`), /1 packets received/, 'ensureNetwork again keeps the WAN working')

  for (const r of records) await driver.destroyHost(ctx, r)
  await driver.destroyNetwork(ctx)
  t.same(await listLeftovers(ctx.prefix), { namespaces: [], links: [], processes: [] }, 'nothing carrying the prefix is left')
  t.notOk(await stat(join(ctx.dir, 'hosts', 'a1')).then(() => true, () => false), 'host state dirs are removed')
})

t.test('a site without a subnet cannot hold local hosts', async t => {
  const ctx = await testContext(t, { a: site('a', '198.18.30.0/24'), cloud: { name: 'cloud' } })
  t.teardown(async () => { await driver.destroyNetwork(ctx) })
  await t.rejects(driver.createHost(ctx, localHost('x', 'cloud')), { code: 'SC_LOCAL_DRIVER' })
})
