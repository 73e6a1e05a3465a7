/** Host firewall rules (firewall/rules.ts) and the facts the controller derives them from (controller/firewall.ts). */
import t from 'tap'
import { admitPeersRuleset, firewallTable, hostFirewallRuleset, removeFirewallRuleset } from '../../../blanket-manager/firewall/rules.ts'
import { admissions, firewallFacts, localSshSource } from '../../../blanket-manager/controller/firewall.ts'
import type { HostRecord } from '../../../drivers/cloud.ts'

const facts = { prefix: 'sc1a', sshFrom: ['198.18.1.1'], hosts: ['198.18.1.11', '198.18.1.11', '198.18.2.10'], vxlanPeers: ['198.18.2.10'] }

/** The rule lines of one chain (between `chain <name> {` and its `}`). */
function chain (text: string, name: string): string[] {
  const start = text.indexOf(`chain ${name} {`)
  return text.slice(start, text.indexOf('  }', start)).split('\n').slice(1).map(l => l.trim())
}

t.test('one table per supercloud in each family, replaced atomically', async t => {
  const text = hostFirewallRuleset(facts)
  t.equal(firewallTable('sc1a'), 'supercloud_sc1a')
  t.match(text, /^table inet supercloud_sc1a\ndelete table inet supercloud_sc1a\ntable inet supercloud_sc1a \{/, 'created if missing, then deleted and defined in the same transaction')
  t.match(text, /table bridge supercloud_sc1a\ndelete table bridge supercloud_sc1a\n/)
  t.notMatch(hostFirewallRuleset({ ...facts, prefix: 'other' }), /supercloud_sc1a/, 'another supercloud has its own tables')
  t.throws(() => firewallTable('Bad-prefix'), { code: 'SC_FIREWALL_FACTS' })
})

t.test('host services: drop by default, each port from its sources only', async t => {
  const input = chain(hostFirewallRuleset(facts), 'input')
  t.match(input[0], /policy drop/)
  const at = (re: RegExp): number => input.findIndex(l => re.test(l))
  t.ok(at(/from a guest/) < at(/established/), 'anything from a guest is dropped before established traffic is accepted')
  t.ok(at(/udp dport 4789 ip saddr @vxlan_peers accept/) >= 0)
  t.ok(at(/udp dport 4789 counter drop/) > at(/udp dport 4789 ip saddr @vxlan_peers accept/), 'other VXLAN dropped (any family)')
  t.ok(at(/udp dport 4789 counter drop/) < at(/established/), 'before a spoofed reply could pass as established')
  t.ok(at(/tcp dport 22 ip saddr @ssh_from accept/) > 0, 'SSH from the driver only')
  t.ok(at(/tcp dport 7709 ip saddr @hosts accept/) > 0, 'the repository from the hosts')
  t.ok(at(/tcp dport 49152-49215 ip saddr @hosts accept/) > 0, 'migration ports from the hosts')
  t.ok(at(/udp dport 1194-1257 ip saddr @hosts accept/) > 0, 'extender ports from the hosts')
  t.notOk(input.some(l => /dport 7709 accept|dport 49152-49215 accept/.test(l)), 'no port open to all')
  const text = hostFirewallRuleset(facts)
  t.match(text, /set hosts \{\n    type ipv4_addr\n    elements = \{ 198\.18\.1\.11, 198\.18\.2\.10 \}/, 'hosts deduplicated and sorted')
  t.match(text, /set vxlan_peers \{\n    type ipv4_addr\n    elements = \{ 198\.18\.2\.10 \}/)
  const anySsh = chain(hostFirewallRuleset({ ...facts, sshFrom: 'any' }), 'input')
  t.ok(anySsh.includes('tcp dport 22 accept'), "SSH from anywhere when the driver's source is not known")
  const none = hostFirewallRuleset({ ...facts, hosts: [], vxlanPeers: [] })
  t.match(none, /set vxlan_peers \{\n    type ipv4_addr\n  \}/, 'an empty set admits no one')
})

t.test('guest ports: marked, and may not pose as a host or the SSH source', async t => {
  const text = hostFirewallRuleset(facts)
  const pre = chain(text, 'prerouting')
  t.match(pre[0], /hook prerouting/)
  t.ok(pre.some(l => /iifname \{ "sc1at\*", "vif\*" \} ip saddr @trusted counter drop/.test(l)))
  t.ok(pre.some(l => /iifname \{ "sc1at\*", "vif\*" \} arp saddr ip @trusted counter drop/.test(l)))
  t.ok(pre.some(l => /meta mark set meta mark \| 0x10000000/.test(l)))
  t.match(text, /set trusted \{\n    type ipv4_addr\n    elements = \{ 198\.18\.1\.1, 198\.18\.1\.11, 198\.18\.2\.10 \}/)
})

t.test('bad facts are refused', async t => {
  t.throws(() => hostFirewallRuleset({ ...facts, vxlanPeers: ['198.18.2.10; flush ruleset'] }), { code: 'SC_FIREWALL_FACTS', message: /VXLAN peer/ })
  t.throws(() => hostFirewallRuleset({ ...facts, hosts: ['host-b'] }), { code: 'SC_FIREWALL_FACTS' })
  t.throws(() => hostFirewallRuleset({ ...facts, sshFrom: ['::1'] }), { code: 'SC_FIREWALL_FACTS' })
})

t.test('removal and admitting peers', async t => {
  t.equal(removeFirewallRuleset('sc1a'), 'table inet supercloud_sc1a\ndelete table inet supercloud_sc1a\ntable bridge supercloud_sc1a\ndelete table bridge supercloud_sc1a\n')
  t.equal(admitPeersRuleset('sc1a', ['198.18.1.12', '198.18.1.11', '198.18.1.12']), 'add element inet supercloud_sc1a vxlan_peers { 198.18.1.11, 198.18.1.12 }\n')
  t.equal(admitPeersRuleset('sc1a', []), '')
})

const rec = (name: string, address: string, reach?: HostRecord['reach']): HostRecord => ({ name, site: 's', driver: 'local', address, ssh: { host: address, port: 22, username: 'root', privateKeyPath: '/k' }, stateDir: '/x', guestBridge: 'br0', driverData: {}, ...(reach !== undefined ? { reach } : {}) })

t.test('facts: other hosts at each address they come from, sisters of encapsulated endpoints', async t => {
  const self = rec('a', '198.18.1.10', { network: 'local p', publicAddress: '192.0.2.1' })
  const f = firewallFacts({
    prefix: 'sc1a',
    self,
    others: [rec('b', '198.18.1.11', { network: 'local p', publicAddress: '192.0.2.1' }), rec('c', '10.0.0.5', { network: 'ec2', publicAddress: '203.0.113.9' })],
    sshFrom: 'any',
    endpoints: [
      [{ id: 1, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } }, { id: 2, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.11', port: 4789 } }],
      [{ id: 3, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '203.0.113.9', port: 4789 } }, { id: 2, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.11', port: 4789 } }]
    ]
  })
  t.same(f.hosts, ['10.0.0.5', '198.18.1.11', '203.0.113.9'], 'a host of another network also at its public address')
  t.same(f.vxlanPeers, ['198.18.1.11', '203.0.113.9'], 'collapsed endpoints admit no one; wanted and current topologies together')
})

t.test("the local driver's SSH source: the site gateway", async t => {
  t.same(localSshSource({ subnet: '198.18.1.0/24' }), ['198.18.1.1'])
  t.same(localSshSource({ subnet: '198.18.1.0/24', gateway: '198.18.1.254' }), ['198.18.1.254'])
  t.equal(localSshSource(undefined), 'any')
})

t.test('endpoint writes admit both ends ahead of their traffic', async t => {
  const recs = [rec('a', '198.18.1.10'), rec('b', '198.18.1.11'), rec('c', '198.18.2.10')]
  const got = admissions([
    { host: 'c', file: 'create', line: '7 198.18.2.10:4789 198.18.1.11:4789' }, // a migration's new endpoint on c, sister on b
    { host: 'b', file: '7', line: '198.18.2.10:4789' }, // b re-pointed at c
    { host: 'a', file: 'create', line: '8 198.18.1.10:4789 198.18.1.10:4789' }, // collapsed: no one
    { host: 'a', file: 'destroy', line: '5' }
  ], recs)
  t.same(Object.fromEntries([...got].map(([h, s]) => [h, [...s].sort()])), { c: ['198.18.1.11'], b: ['198.18.2.10'] })
})
