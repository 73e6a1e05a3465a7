/**
 * An extender between two sites of the local driver: OpenVPN between the gateway hosts
 * (started over SSH, as the controller will), routes from extenderRoutes() on every host;
 * traffic between the sites takes the tunnel, stops when the extender stops (no fallback
 * onto the WAN) and comes back when it is restarted.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createLocalDriver, type LocalHostData } from '../../../../drivers/local/driver.ts'
import type { HostRecord } from '../../../../drivers/cloud.ts'
import { SshConnection } from '../../../../core/ssh.ts'
import { extenderDevName, extenderRoutes, DEFAULT_UNDERLAY_POLICY } from '../../../../virtualwire/extender/openvpn.ts'
import {
  applyExtenderRoutes, connectExtender, extenderPid, extenderState, netnsShell, sshShell, startExtender, stopExtender, type HostShell
} from '../../../../virtualwire/extender/manage.ts'
import { localHost, site, testContext } from '../../drivers/helpers.ts'

const driver = createLocalDriver()
// `openvpn --version` exits 1 after printing the version.
const haveOpenvpn = /^OpenVPN 2\./.test(spawnSync('openvpn', ['--version'], { encoding: 'utf8' }).stdout ?? '')

async function pingCount (sh: HostShell, address: string, count = 3): Promise<number> {
  const r = await sh.run(['busybox', 'ping', '-c', String(count), '-W', '2', address], { allowFailure: true })
  return Number(/(\d+) packets received/.exec(r.stdout)?.[1] ?? 0)
}

async function counter (sh: HostShell, dev: string, name: 'tx_packets' | 'rx_packets'): Promise<number> {
  return Number((await sh.run(['cat', `/sys/class/net/${dev}/statistics/${name}`])).stdout.trim())
}

t.test('an extender carries traffic between two sites', { skip: haveOpenvpn ? false : 'openvpn missing' }, async t => {
  const ctx = await testContext(t, { a: site('a', '198.18.40.0/24'), b: site('b', '198.18.41.0/24') })
  const specs = [localHost('agw', 'a'), localHost('anode', 'a'), localHost('bgw', 'b')]
  ctx.hosts = Object.fromEntries(specs.map(s => [s.name, s]))
  const records: HostRecord[] = []
  const conns: SshConnection[] = []
  t.teardown(async () => {
    for (const c of conns) c.close()
    for (const r of records) await driver.destroyHost(ctx, r).catch(() => {})
    await driver.destroyNetwork(ctx).catch(() => {})
  })
  for (const s of specs) records.push(await driver.createHost(ctx, s))
  const [agw, anode, bgw] = records as [HostRecord, HostRecord, HostRecord]
  t.same(records.map(r => r.address), ['198.18.40.10', '198.18.40.11', '198.18.41.10'], 'agw and anode in site a, bgw in site b')

  // The controller's way in: SSH through each host's proxy command.
  const ssh = async (r: HostRecord): Promise<HostShell> => {
    const c = await SshConnection.connect(r.name, r.ssh)
    conns.push(c)
    return sshShell(c)
  }
  const [shA, shN, shB] = [await ssh(agw), await ssh(anode), await ssh(bgw)]
  // The test's own view of each host, straight into its namespace.
  const ns = (r: HostRecord): HostShell => netnsShell(r.name, (r.driverData as unknown as LocalHostData).ns)

  t.match((await shN.run(['ip', 'route', 'get', bgw.address])).stdout, /via 198\.18\.40\.1 /, 'before: a -> b goes over the WAN through the site gateway')

  const dev = extenderDevName(ctx.prefix, 0)
  const side = (shell: HostShell, r: HostRecord): Parameters<typeof connectExtender>[0]['a'] =>
    ({ shell, ip: r.address, port: 1194, dev, runDir: `${r.stateDir}/extender` })
  const connect = async (): ReturnType<typeof connectExtender> =>
    await connectExtender({ name: 'a-b', index: 0, a: side(shA, agw), b: side(shB, bgw), timeoutMs: 60_000 })
  const ends = await connect()
  t.pass(`tunnel up: ${ends.a.tunnelLocal} (agw) <-> ${ends.b.tunnelLocal} (bgw) on ${dev}`)
  const conf = (await ns(agw).run(['cat', `${agw.stateDir}/extender/a-b.conf`])).stdout
  t.match(conf, /^peer-fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}$/m, 'each end pins the other by fingerprint')
  t.match((await ns(agw).run(['cat', `${agw.stateDir}/extender/a-b.log`])).stdout, /Data Channel: cipher 'AES-256-GCM'/, 'data channel is AES-256-GCM')

  const plan = extenderRoutes({
    sites: { a: { subnet: '198.18.40.0/24' }, b: { subnet: '198.18.41.0/24' } },
    gateways: { a: 'agw', b: 'bgw' },
    hostsBySite: { a: [agw, anode].map(r => ({ name: r.name, address: r.address })), b: [{ name: bgw.name, address: bgw.address }] },
    tunnels: [{ name: 'a-b', a: { site: 'a', dev, tunnelIp: ends.a.tunnelLocal, endpoint: agw.address }, b: { site: 'b', dev, tunnelIp: ends.b.tunnelLocal, endpoint: bgw.address } }]
  })
  const shells: Record<string, HostShell> = { agw: shA, anode: shN, bgw: shB }
  const applyAll = async (): Promise<void> => {
    for (const [host, p] of Object.entries(plan)) await applyExtenderRoutes(shells[host] as HostShell, p)
  }
  await applyAll()
  await applyAll()
  t.pass('routes applied (twice: idempotent)')

  t.match((await shN.run(['ip', 'route', 'get', bgw.address])).stdout, /via 198\.18\.40\.10 /, 'anode sends site b traffic to its gateway host')
  t.match((await shA.run(['ip', 'route', 'get', bgw.address])).stdout, new RegExp(`via ${ends.a.tunnelRemote.replace(/\./g, '\\.')} dev ${dev} `), 'agw sends it into the tunnel')
  t.match((await shA.run(['ip', 'route', 'get', bgw.address, 'mark', String(DEFAULT_UNDERLAY_POLICY.mark)])).stdout, /via 198\.18\.40\.1 dev br0 /, 'OpenVPN\'s own (marked) packets keep the underlay')

  const txBefore = await counter(ns(agw), dev, 'tx_packets')
  const rxBefore = await counter(ns(agw), dev, 'rx_packets')
  const statusBefore = (await extenderState(shA, ends.a)).status
  t.equal(await pingCount(shN, bgw.address, 5), 5, 'anode (site a) pings bgw (site b)')
  t.ok(await counter(ns(agw), dev, 'tx_packets') >= txBefore + 5, 'the echo requests left through agw\'s tun device')
  t.ok(await counter(ns(agw), dev, 'rx_packets') >= rxBefore + 5, 'the replies came back through it')
  // OpenVPN rewrites its status file every second: wait for the update that counts the pings.
  let statusAfter = statusBefore
  for (let i = 0; i < 40 && (statusAfter?.tunReadBytes ?? 0) < (statusBefore?.tunReadBytes ?? 0) + 5 * 84; i++) {
    await new Promise(resolve => setTimeout(resolve, 250))
    statusAfter = (await extenderState(shA, ends.a)).status
  }
  t.ok((statusAfter?.tunReadBytes ?? 0) >= (statusBefore?.tunReadBytes ?? 0) + 5 * 84, `OpenVPN on agw encrypted the 5 echo requests (tun read ${statusBefore?.tunReadBytes} -> ${statusAfter?.tunReadBytes} bytes)`)
  t.ok((statusAfter?.linkWriteBytes ?? 0) > (statusBefore?.linkWriteBytes ?? 0), 'and sent them over UDP')
  t.equal(await pingCount(shB, anode.address, 2), 2, 'bgw reaches anode back through the tunnel (its src is its site address)')

  // Starting again changes nothing.
  const pidA = await extenderPid(shA, ends.a)
  const again = await startExtender(shA, ends.a)
  t.same(again, { pid: pidA, started: false }, 'start is idempotent: the same process keeps running')

  // Stopped: the tunnel and its routes go, the unreachable fallback keeps the traffic off the WAN.
  t.equal(await stopExtender(shA, ends.a), true, 'stopped on agw')
  t.equal(await stopExtender(shB, ends.b), true, 'stopped on bgw')
  t.equal(await stopExtender(shB, ends.b), false, 'stopping twice is fine')
  t.equal((await extenderState(shA, ends.a)).running, false, 'state says not running')
  t.equal(await pingCount(shN, bgw.address, 2), 0, 'with the extender stopped, site a cannot reach site b')
  const get = await shA.run(['ip', 'route', 'get', bgw.address], { allowFailure: true })
  t.not(get.code, 0, `agw has no route to site b but the unreachable one (${(get.stderr || get.stdout).trim()})`)

  // Restarted (what the controller does: connect, then apply the gateways' routes again).
  await connect()
  for (const host of ['agw', 'bgw']) await applyExtenderRoutes(shells[host] as HostShell, plan[host] as NonNullable<typeof plan[string]>)
  t.equal(await pingCount(shN, bgw.address, 3), 3, 'after a restart, site a reaches site b through the tunnel again')
})
