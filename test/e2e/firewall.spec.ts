/**
 * Host firewalls as an attacker sees them (issue 14 item 3), through the real CLI: two local
 * hosts on one site, web1 on host-a with a NIC on the site segment (eth0) and one wired to a
 * Domain-0 switch on host-b (eth1, a VXLAN connector between the hosts; no second guest to
 * boot). An outsider namespace on the site's underlay and the guest web1 try the hosts' SSH, repository and migration ports, and the
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
    'network:',
    '  switches:',
    '    sw1: { host: host-b }',
    '  wires:',
    '    - web1.eth1 -- sw1.p1'
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

/** Sends 10 crafted VXLAN frames from namespace `ns` at host:4789, each a netprobe datagram to web1's wired address and `port`. */
async function craft (ns: string, host: string, vni: number, port: number): Promise<void> {
  await run(['ip', 'netns', 'exec', ns, 'node', '--import', 'tsx', join(ROOT, 'test', 'helpers', 'vxlan-craft.ts'), host, String(vni), macFor(NAME, 'web1', 'eth1'), '198.19.31.99', '198.19.31.11', String(port), '10'])
}

let prefix = ''
const addr: Record<string, string> = {}

t.test('up', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr.slice(-2000))
  prefix = sb.prefix(NAME) ?? ''
  t.match(r.stderr, /host host-a\b.*nftables table supercloud_/, 'up installs the host firewall')
  for (const h of ['host-a', 'host-b']) {
    const list = await run(['ip', 'netns', 'exec', hostNs(prefix, h), 'nft', 'list', 'table', 'inet', `supercloud_${prefix}`], { allowFailure: true })
    t.match(list.stdout, /policy drop/, `${h} has the supercloud's table`)
  }
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
  const a = addr['host-a'] ?? ''
  const [repo, mig, ssh, ctlRepo, ctlMig, ctlSsh] = await Promise.all([
    tcpFrom(outsider, a, 7709), tcpFrom(outsider, a, 49160), tcpFrom(outsider, a, 22),
    tcpFrom(hostB, a, 7709), tcpFrom(hostB, a, 49160), tcpFrom(siteNs(prefix, 's1'), a, 22)
  ])
  t.match(ctlRepo, /repository/, 'control: another host of the supercloud reaches the repository port')
  t.match(ctlMig, /migration/, 'control: and a migration port')
  t.match(ctlSsh, /SSH-2\.0/, 'control: the driver\'s path to SSH works')
  t.equal(repo, '', 'the repository port')
  t.equal(mig, '', 'a migration port')
  t.equal(ssh, '', 'SSH (only the driver\'s path may)')
})

t.test('a crafted VXLAN frame from the outsider never reaches the wired guest', async t => {
  const wires = JSON.parse((await sb.run(['wire', 'list', '--json'])).stdout) as Array<{ id: number, wire: string }>
  const vni = wires[0]?.id ?? 0
  // web1 counts what arrives on UDP 5000 (frames crafted on the connector's peer host) and 5001 (the outsider's).
  t.equal((await guest('web1', 'for p in 5000 5001; do netprobe recv $p --seconds 60 > /tmp/np$p 2>&1 & done; sleep 1')).code, 0)
  await Promise.all([craft(hostNs(prefix, 'host-b'), addr['host-a'] ?? '', vni, 5000), craft(hostNs(prefix, 'outsider'), addr['host-a'] ?? '', vni, 5001)])
  const out = (await guest('web1', 'killall -INT netprobe; sleep 0.5; echo peer $(cat /tmp/np5000); echo outsider $(cat /tmp/np5001)')).out
  t.match(out, /peer \{"received":([1-9]|10),/, `control: the same frames crafted on the connector's peer host reach web1: ${out}`)
  t.match(out, /outsider \{"received":0,/, `none from the outsider: ${out}`)
})

t.test('a guest cannot open its host\'s services', async t => {
  const targets = [['host-a', 22], ['host-a', 7709], ['host-b', 22], ['host-a', 49160]] as const
  const r = await guest('web1', targets.map(([h, p]) => `echo "== ${h}:${p}"; nc -w 2 ${addr[h] ?? ''} ${p} </dev/null`).join('; ') + '; echo "== end"; ping -c 1 -W 3 198.18.31.1 >/dev/null && echo gateway-ok', 90)
  for (const [h, p] of targets) {
    const got = r.out.split(`== ${h}:${p}`)[1]?.split('==')[0]?.trim() ?? 'missing'
    t.notMatch(got, /SSH-2\.0|repository|migration|missing/, `web1 gets nothing from ${h}:${p}: ${got}`)
  }
  t.match(r.out, /== end/)
  t.match(r.out, /gateway-ok/, `control: web1 still reaches its site's gateway: ${r.out}`)
})

t.test('a second up changes no firewall', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr.slice(-1000))
  t.notMatch(r.stderr, /nftables table/, 'the installed rules are the wanted ones: nothing re-applied')
})

t.test('down', async t => {
  const r = await sb.run(['down'])
  t.equal(r.code, 0, r.stderr.slice(-1000))
})
