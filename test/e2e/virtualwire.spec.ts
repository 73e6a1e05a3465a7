/**
 * VirtualWire through the real CLI on examples/virtualwire.yaml: web1 and app1 on a Domain-0
 * switch in cloud-a, a transparent firewall VM fw1, and db1 behind it in cloud-b (the wire
 * crosses sites through the OpenVPN extender). Traffic, firewall rules, VLAN tags, broadcast,
 * run-time rewiring, bad endpoint writes, an endpoint manager restart and a vanished host.
 */
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { sandbox, ROOT } from '../helpers/cli.ts'
import { leftovers } from '../helpers/sweep-lib.ts'
import { parseSpec } from '../../blanket-manager/specfile/load.ts'
import { withQmp } from '../../drivers/qemu/qmp.ts'

const file = join(ROOT, 'examples', 'virtualwire.yaml')
const text = readFileSync(file, 'utf8')
const spec = parseSpec(text, file)
const sb = sandbox(t, text, spec.name)
const ip = (vm: string, nic = 0): string => (spec.vms[vm]?.nics[nic]?.address ?? '').split('/')[0] ?? ''

async function guest (vm: string, cmd: string, timeout = 60): Promise<{ code: number, out: string }> {
  const r = await sb.run(['console', vm, '--run', cmd, '--timeout', String(timeout)])
  return { code: r.code, out: r.stdout + r.stderr }
}

t.test('up wires the topology', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /extender: cloud-a \(host-b\) <-> cloud-b \(host-c\) over OpenVPN/)
  t.match(r.stderr, /echo "1 198\.18\.1\.10:4789 198\.18\.1\.10:4789" > create/, 'web1 and sw1 share host-a: collapsed')
  const again = await sb.run(['up'])
  t.match(again.stderr, /plan: nothing to change/)
})

t.test('wire list shows connectors, collapsed and encapsulated', async t => {
  const r = await sb.run(['wire', 'list', '--json'])
  const rows = JSON.parse(r.stdout) as Array<{ id: number, wire: string, hosts: string[], mode: string }>
  t.equal(rows.length, 4)
  t.same(rows.find(x => x.wire === 'sw1.p1 -- web1.eth0')?.mode, 'collapsed')
  t.same(rows.find(x => x.wire === 'db1.eth0 -- fw1.eth1')?.hosts, ['host-c', 'host-b'])
})

t.test('traffic through the switch, the firewall and across sites, at the reduced MTU', async t => {
  const a = await guest('web1', `ping -c 2 -W 5 ${ip('app1')}`)
  t.equal(a.code, 0, a.out)
  const b = await guest('web1', `ping -c 2 -W 5 ${ip('db1')}`)
  t.equal(b.code, 0, `web1 reaches db1 through sw1, fw1 and the extender: ${b.out}`)
  const mtu = await guest('web1', 'cat /sys/class/net/eth0/mtu')
  t.equal(mtu.out.trim(), '1450', 'the guest NIC advertises the connector MTU')
  const big = await guest('web1', `ping -c 1 -W 5 -s 1422 ${ip('db1')}`)
  t.equal(big.code, 0, 'a full-size frame crosses without fragmentation')
})

t.test("the firewall's rules are enforced", async t => {
  await guest('db1', 'netprobe echo 7 >/dev/null 2>&1 & netprobe echo 9 >/dev/null 2>&1 & sleep 1')
  const allowed = await guest('web1', `netprobe send ${ip('db1')} 7 --interval-ms 10 --count 20`)
  t.match(allowed.out, /"received":20/, `udp:7 is allowed: ${allowed.out}`)
  const dropped = await guest('web1', `netprobe send ${ip('db1')} 9 --interval-ms 10 --count 20`)
  t.match(dropped.out, /"received":0,"lost":20/, `udp:9 is dropped: ${dropped.out}`)
  const sameSwitch = await guest('app1', 'netprobe echo 9 >/dev/null 2>&1 & sleep 1')
  t.equal(sameSwitch.code, 0)
  const notFiltered = await guest('web1', `netprobe send ${ip('app1')} 9 --interval-ms 10 --count 20`)
  t.match(notFiltered.out, /"received":20/, 'traffic that does not cross fw1 is not filtered')
})

t.test('VLAN-tagged frames and broadcast pass unchanged', async t => {
  const up = (vm: string, addr: string): string => `ip link add link eth0 name eth0.10 type vlan id 10 && ip addr add ${addr}/24 dev eth0.10 && ip link set eth0.10 up`
  t.equal((await guest('web1', up('web1', '198.19.110.11'))).code, 0)
  t.equal((await guest('db1', up('db1', '198.19.110.21'))).code, 0)
  const v = await guest('web1', 'ping -c 2 -W 5 198.19.110.21')
  t.equal(v.code, 0, `VLAN 10 from web1 to db1 through the firewall: ${v.out}`)
  // ARP requests are broadcasts: with the neighbour cache flushed, a ping needs one to cross.
  const bc = await guest('web1', `ip neigh flush dev eth0; ping -c 1 -W 5 ${ip('db1')} && ip neigh show dev eth0`)
  t.equal(bc.code, 0, bc.out)
  t.match(bc.out, new RegExp(`${ip('db1').replace(/\./g, '\\.')} .*lladdr`), 'the broadcast ARP request was answered across sites')
})

t.test('run-time rewiring: disconnect cuts, connect restores', async t => {
  const d = await sb.run(['wire', 'disconnect', 'web1.eth0', 'sw1.p1'])
  t.equal(d.code, 0, d.stderr)
  t.not((await guest('web1', `ping -c 1 -W 2 ${ip('app1')}`)).code, 0, 'cut off')
  const c = await sb.run(['wire', 'connect', 'web1.eth0', 'sw1.p1'])
  t.equal(c.code, 0, c.stderr)
  t.equal((await guest('web1', `ping -c 2 -W 5 ${ip('app1')}`)).code, 0, 'back')
  const bad = await sb.run(['wire', 'connect', 'web1.eth0', 'sw1.p9'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /web1\.eth0 .*wired|already/, 'wiring a NIC twice is refused')
  const missing = await sb.run(['wire', 'connect', 'nosuch.eth0', 'sw1.p9'])
  t.not(missing.code, 0)
  t.match(missing.stderr, /nosuch/)
})

t.test('the endpoint interface refuses bad writes with a reason', async t => {
  const st = JSON.parse((await sb.run(['status', '--json'])).stdout) as { stateFile: string }
  const hostDir = join(st.stateFile, '..', 'hosts', 'host-a', 'vw')
  const cases: Array<[string, string, RegExp]> = [
    ['create', 'garbage', /Invalid argument/],
    ['create', '1 198.18.1.10:4789 198.18.1.10:4789', /File exists/],
    ['destroy', '999', /No such file or directory/],
    ['create', '16777216 198.18.1.10 198.18.1.11', /Numerical result out of range/]
  ]
  for (const [f, line, re] of cases) {
    const r = await sb.run(['ssh', 'host-a', `echo '${line}' > ${hostDir}/${f}`])
    t.not(r.code, 0, `${f} <- ${line}`)
    t.match(r.stderr, re)
    const why = await sb.run(['ssh', 'host-a', `cat ${hostDir}/last_error`])
    t.ok(why.stdout.trim().length > 0, `reason: ${why.stdout.trim()}`)
  }
  t.equal((await guest('web1', `ping -c 1 -W 5 ${ip('app1')}`)).code, 0, 'nothing was lost')
})

t.test('an endpoint manager restart loses no configuration', async t => {
  const st = JSON.parse((await sb.run(['status', '--json'])).stdout) as { stateFile: string }
  const pidFile = join(st.stateFile, '..', 'hosts', 'host-b', 'vw-endpoints.pid')
  await sb.run(['ssh', 'host-b', `kill -9 $(cat ${pidFile})`])
  const plan = await sb.run(['plan'])
  t.match(plan.stdout, /virtualwire .*endpoints drifted/)
  const up = await sb.run(['up'])
  t.equal(up.code, 0, up.stderr)
  t.match(up.stderr, /host-b .*starting the endpoint manager/)
  t.equal((await guest('web1', `ping -c 2 -W 5 ${ip('db1')}`)).code, 0)
})

/** On a failed probe: is the path still broken, and what do the endpoints and the tunnel look like? */
async function diagnose (t: Test, to: string): Promise<void> {
  const again = await guest('web1', `netprobe send ${ip('db1')} 7 --interval-ms 10 --count 300`)
  t.comment(`probe again after the move: ${again.out.trim()}`)
  t.comment(`db1 console: ${(await guest('db1', 'uptime; cat /proc/loadavg; ps')).out.trim()}`)
  // The guest's own view: its QEMU's state, where its CPU is, and the kernel's recent complaints
  // (the console is quiet: the image sets the console log level to 1), read from guest memory.
  const st = JSON.parse((await sb.run(['status', '--json'])).stdout) as { stateFile: string }
  const run = join(st.stateFile, '..', 'hosts', to, 'vms', 'db1', 'run')
  await withQmp(join(run, 'qmp-mig.sock'), async q => {
    t.comment(`db1 on ${to}: ${JSON.stringify(await q.execute('query-status'))} ${JSON.stringify(await q.execute('query-migrate'))}`)
    t.comment(String(await q.execute('human-monitor-command', { 'command-line': 'info registers' })))
    for (let i = 0; i < 8; i++) t.comment(String(await q.execute('human-monitor-command', { 'command-line': 'info registers' })).split('\n').slice(0, 3).join(' '))
    t.comment(String(await q.execute('human-monitor-command', { 'command-line': 'info cpus' })))
    const dump = join(sb.dir, 'db1.mem')
    await q.execute('pmemsave', { val: 0, size: 160 * 1024 * 1024, filename: dump })
    const strings = execFileSync('sh', ['-c', `strings -n 10 ${dump} | grep -E 'lockup|rcu|stall|clocksource|blk_update_request|I/O error|virtio|hung|timekeeping|Call Trace|RIP:' | tail -n 60`], { encoding: 'utf8', maxBuffer: 1 << 24 })
    t.comment(`kernel messages in db1's memory:\n${strings}`)
  }).catch(err => { t.comment(`QMP diagnostics failed: ${(err as Error).message}`) })
  t.comment(`qemu.log: ${(() => { try { return readFileSync(join(run, 'qemu.log'), 'utf8') } catch (err) { return (err as Error).message } })()}`)
  for (const h of ['host-a', 'host-b', 'host-c']) {
    const r = await sb.run(['ssh', h, 'ip -d link show type vxlan; bridge fdb show | grep -v permanent; ip route; ip -s link show type tun; ps -o pid,etime,args -e | grep -E "openvpn|qemu" | grep -v grep'])
    t.comment(`${h} (${to}):\n${r.stdout}${r.stderr}`)
  }
}

// One move each way across the extenders (db1 into cloud-a, then fw1 into cloud-b), not a round
// trip each: a move across the 200 Mbit/s WAN with its disk is among the most expensive things
// this file does, and the way back crossed the same path again.
t.test('db1 migrates from cloud-b to cloud-a with its disk while web1 keeps talking to it', async t => {
  const sum = await guest('db1', 'dd if=/dev/urandom of=/dev/vda bs=1M count=8 2>/dev/null; sync; md5sum /dev/vda; netprobe echo 7 >/dev/null 2>&1 & sleep 0.5')
  const disk = /^([0-9a-f]{32})/m.exec(sum.out)?.[1]
  t.ok(disk, 'disk checksum taken')
  for (const to of ['host-b']) {
    const probe = guest('web1', `netprobe send ${ip('db1')} 7 --interval-ms 10 --count 2500`, 90)
    await new Promise(resolve => setTimeout(resolve, 2000))
    const m = await sb.run(['migrate', 'db1', '--to', to, '--json'])
    t.equal(m.code, 0, m.stderr)
    const p = await probe
    const stats = JSON.parse(/\{.*"maxGapMs".*\}/.exec(p.out)?.[0] ?? '{}') as { received?: number, maxGapMs?: number, sent?: number }
    const kept = (stats.received ?? 0) > (stats.sent ?? 1) * 0.5
    t.ok(kept, `the peer kept talking to db1 during the move to ${to}: ${p.out.trim()}`)
    const after = await guest('db1', 'md5sum /dev/vda')
    const intact = /^([0-9a-f]{32})/m.exec(after.out)?.[1] === disk
    t.ok(intact, `disk intact on ${to}: ${after.out.trim()}`)
    if (!kept || !intact) await diagnose(t, to)
    const rows = JSON.parse((await sb.run(['wire', 'list', '--json'])).stdout) as Array<{ wire: string, hosts: string[] }>
    t.ok(rows.find(r => r.wire === 'db1.eth0 -- fw1.eth1')?.hosts.includes(to), 'its connector now ends on the new host')
  }
  const plan = await sb.run(['plan'])
  t.match(plan.stdout, /nothing to change/, 'endpoints are exactly where the wires want them')
})

t.test('fw1, two wired NICs and a disk, moves to cloud-b while web1 keeps talking to db1 through it', async t => {
  const sum = await guest('fw1', 'dd if=/dev/urandom of=/dev/vda bs=1M count=4 2>/dev/null; sync; md5sum /dev/vda')
  const disk = /^([0-9a-f]{32})/m.exec(sum.out)?.[1]
  t.ok(disk, 'disk checksum taken')
  await guest('db1', 'netprobe echo 7 >/dev/null 2>&1 & sleep 0.5')
  for (const to of ['host-c']) {
    // Every probe crosses fw1 twice (eth0 in, eth1 out, and back): both of its connectors move.
    const probe = guest('web1', `netprobe send ${ip('db1')} 7 --interval-ms 10 --count 2500`, 90)
    await new Promise(resolve => setTimeout(resolve, 2000))
    const m = await sb.run(['migrate', 'fw1', '--to', to, '--json'])
    t.equal(m.code, 0, m.stderr)
    const p = await probe
    const stats = JSON.parse(/\{.*"maxGapMs".*\}/.exec(p.out)?.[0] ?? '{}') as { received?: number, sent?: number }
    t.ok((stats.received ?? 0) > (stats.sent ?? 1) * 0.5, `web1 kept talking to db1 through fw1 during its move to ${to}: ${p.out.trim()}`)
    const after = await guest('fw1', 'md5sum /dev/vda')
    t.equal(/^([0-9a-f]{32})/m.exec(after.out)?.[1], disk, `fw1's disk intact on ${to}`)
    const rows = JSON.parse((await sb.run(['wire', 'list', '--json'])).stdout) as Array<{ wire: string, hosts: string[] }>
    t.ok(rows.find(r => r.wire === 'fw1.eth0 -- sw1.p3')?.hosts.includes(to), 'its front connector ends on the new host')
    t.ok(rows.find(r => r.wire === 'db1.eth0 -- fw1.eth1')?.hosts.includes(to), 'its back connector ends on the new host')
  }
  const udp9 = await guest('web1', `netprobe send ${ip('db1')} 9 --interval-ms 10 --count 20`)
  t.match(udp9.out, /"received":0,"lost":20/, `its rules still hold after the moves: ${udp9.out.trim()}`)
  t.match((await sb.run(['plan'])).stdout, /nothing to change/, 'endpoints are exactly where the wires want them')
})

t.test('a host that disappears is rebuilt with its guests and wires', async t => {
  const prefix = sb.prefix(spec.name) ?? ''
  const ns = leftovers(prefix).namespaces.find(n => n.endsWith('host-a')) ?? ''
  t.ok(ns)
  for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean)) execFileSync('kill', ['-9', pid])
  execFileSync('ip', ['netns', 'del', ns])
  const up = await sb.run(['up'])
  t.equal(up.code, 0, up.stderr)
  t.match(up.stderr, /host host-a .*host is (gone|unreachable): repairing/)
  t.equal((await guest('web1', `ping -c 2 -W 5 ${ip('app1')}`)).code, 0, 'web1 is back on its switch')
  t.equal((await guest('app1', `ping -c 2 -W 5 ${ip('db1')}`)).code, 0, 'and the rest still works')
})
