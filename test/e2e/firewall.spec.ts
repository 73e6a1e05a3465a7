/**
 * Host firewalls as an attacker sees them (issue 14 item 3), through the real CLI: two local
 * hosts on one site, web1 on host-a with a NIC on the site segment (eth0) and one wired to app1
 * on host-b (eth1, a VXLAN connector between the hosts). An outsider namespace on the site's
 * underlay and the guest web1 try the hosts' SSH, repository and migration ports, and the
 * outsider sends crafted VXLAN frames at the wire. Each check has a control that shows the
 * path itself works for those the firewall admits (a host, a connector's peer).
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { sandbox, ROOT } from '../helpers/cli.ts'
import { tcgSpec } from '../helpers/specs.ts'
import { hostNs, siteNs } from '../../drivers/local/names.ts'
import { run } from '../../drivers/local/sh.ts'
import { macFor } from '../../core/names.ts'

const NAME = 'fwall'
const SUBNET = '198.18.31.0/24'
const OUTSIDER = '198.18.31.200'
const sb = sandbox(t, tcgSpec({
  name: NAME,
  sites: { s1: SUBNET },
  hosts: { 'host-a': { site: 's1', memory: '512M' }, 'host-b': { site: 's1', memory: '512M' } },
  vms: [
    '  web1: { image: tiny, host: host-a, memory: 128M, nics: [ { name: eth0, address: 198.18.31.101/24 }, { name: eth1, address: 198.19.31.11/24 } ] }',
    '  app1: { image: tiny, host: host-b, memory: 128M, nics: [ { name: eth0, address: 198.19.31.12/24 } ] }',
    'network:',
    '  wires:',
    '    - web1.eth1 -- app1.eth0'
  ]
}), NAME)

const children: ChildProcess[] = []
t.teardown(() => { for (const c of children) c.kill('SIGKILL') })

async function guest (vm: string, cmd: string, timeout = 60): Promise<{ code: number, out: string }> {
  const r = await sb.run(['console', vm, '--run', cmd, '--timeout', String(timeout)])
  return { code: r.code, out: r.stdout + r.stderr }
}

/** What a TCP client in namespace `ns` gets from addr:port within 3 s ('' when it could not connect or got nothing). */
async function tcpFrom (ns: string, addr: string, port: number): Promise<string> {
  const r = await run(['ip', 'netns', 'exec', ns, 'timeout', '4', 'socat', '-T', '2', '-', `TCP:${addr}:${port},connect-timeout=3`], { allowFailure: true, input: '' })
  return r.stdout
}

/** A stand-in service on a host port (what the repository or a migration listener would be). */
function listen (ns: string, port: number, banner: string): void {
  children.push(spawn('ip', ['netns', 'exec', ns, 'socat', `TCP-LISTEN:${port},reuseaddr,fork`, `SYSTEM:echo ${banner}`], { stdio: 'ignore' }))
}

/** Crafted VXLAN frames sent from namespace `ns` at host:4789; how many web1's netprobe counted. */
async function craftedReceived (ns: string, host: string, vni: number): Promise<string> {
  t.equal((await guest('web1', 'netprobe recv 5000 --seconds 60 > /tmp/np 2>&1 & sleep 1')).code, 0)
  await run(['ip', 'netns', 'exec', ns, 'node', '--import', 'tsx', join(ROOT, 'test', 'helpers', 'vxlan-craft.ts'), host, String(vni), macFor(NAME, 'web1', 'eth1'), '198.19.31.99', '198.19.31.11', '5000', '10'])
  return (await guest('web1', 'killall -INT netprobe; sleep 0.5; cat /tmp/np')).out
}

let prefix = ''
const addr: Record<string, string> = {}

t.test('up', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr.slice(-2000))
  prefix = sb.prefix(NAME) ?? ''
  const st = JSON.parse((await sb.run(['status', '--json'])).stdout) as { hosts: Array<{ name: string, address: string }> }
  for (const h of st.hosts) addr[h.name] = h.address
  // The outsider: a namespace on the site's underlay segment, as any machine on a shared network.
  const ns = hostNs(prefix, 'outsider')
  await run(['ip', 'netns', 'add', ns])
  await run(['ip', '-n', siteNs(prefix, 's1'), 'link', 'add', 'o-outsider', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
  await run(['ip', '-n', siteNs(prefix, 's1'), 'link', 'set', 'o-outsider', 'master', 'br0', 'up'])
  await run(['ip', '-n', ns, 'addr', 'add', `${OUTSIDER}/24`, 'dev', 'eth0'])
  await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
  await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  listen(hostNs(prefix, 'host-a'), 7709, 'repository')
  listen(hostNs(prefix, 'host-a'), 49160, 'migration')
})

t.test('an outsider on the underlay gets nothing from a host', async t => {
  const outsider = hostNs(prefix, 'outsider')
  const hostB = hostNs(prefix, 'host-b')
  t.match(await tcpFrom(hostB, addr['host-a'] ?? '', 7709), /repository/, 'control: another host of the supercloud reaches the repository port')
  t.match(await tcpFrom(hostB, addr['host-a'] ?? '', 49160), /migration/, 'control: and a migration port')
  t.equal(await tcpFrom(outsider, addr['host-a'] ?? '', 7709), '', 'the repository port')
  t.equal(await tcpFrom(outsider, addr['host-a'] ?? '', 49160), '', 'a migration port')
  t.equal(await tcpFrom(outsider, addr['host-a'] ?? '', 22), '', 'SSH (only the driver\'s path may)')
  t.match(await tcpFrom(siteNs(prefix, 's1'), addr['host-a'] ?? '', 22), /SSH-2\.0/, 'control: the driver\'s path to SSH works')
})

t.test('a crafted VXLAN frame from the outsider never reaches the wired guest', async t => {
  const wires = JSON.parse((await sb.run(['wire', 'list', '--json'])).stdout) as Array<{ id: number, wire: string }>
  const vni = wires[0]?.id ?? 0
  const fromPeer = await craftedReceived(hostNs(prefix, 'host-b'), addr['host-a'] ?? '', vni)
  t.match(fromPeer, /"received":([1-9]|10)\b/, `control: the same frames from the connector's peer host reach web1: ${fromPeer}`)
  const fromOutsider = await craftedReceived(hostNs(prefix, 'outsider'), addr['host-a'] ?? '', vni)
  t.match(fromOutsider, /"received":0,/, `none from the outsider: ${fromOutsider}`)
})

t.test('a guest cannot open its host\'s services', async t => {
  for (const [host, port] of [['host-a', 22], ['host-a', 7709], ['host-b', 22], ['host-a', 49160]] as const) {
    const r = await guest('web1', `nc -w 3 ${addr[host] ?? ''} ${port} </dev/null; echo done`)
    t.notMatch(r.out, /SSH-2\.0|repository|migration/, `web1 gets nothing from ${host}:${port}: ${r.out.trim()}`)
    t.match(r.out, /done/)
  }
  const gw = await guest('web1', 'ping -c 1 -W 3 198.18.31.1')
  t.equal(gw.code, 0, `control: web1 still reaches its site's gateway: ${gw.out}`)
})

t.test('down removes the firewall with the hosts', async t => {
  const r = await sb.run(['down'])
  t.equal(r.code, 0, r.stderr.slice(-1000))
})
