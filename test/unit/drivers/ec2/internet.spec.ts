import t from 'tap'
import { edgeRules, gatewayRules, internetPlan, publicAddressOf, uplinkValue } from '../../../../drivers/ec2/fake-server/internet.ts'
import { parseUplink } from '../../../../drivers/local/uplink.ts'

t.test('the fake internet\'s addresses', async t => {
  const p = internetPlan()
  t.same(p, {
    internet: '198.18.232.0/24', prefixLen: 24, publicAddress: '198.18.232.1', igwAddress: '198.18.232.2',
    lan: '198.18.233.0/24', lanPrefixLen: 24, lanGateway: '198.18.233.1'
  })
  t.equal(publicAddressOf(p, 0), '198.18.232.10')
  t.equal(publicAddressOf(p, 244), '198.18.232.254')
  t.throws(() => publicAddressOf(p, 245), /no public address left/)
  t.throws(() => internetPlan('198.18.232.0/25'), /\/24 or larger/)
})

t.test('the uplink for a local WAN parses back as the local driver reads it', async t => {
  const p = internetPlan()
  t.same(parseUplink(uplinkValue(p, 'sct1-inet', 1)), {
    ns: 'sct1-inet', bridge: 'lan0', address: '198.18.233.11/24', gateway: '198.18.233.1', publicAddress: '198.18.232.1'
  })
})

t.test('the edge masquerades its LAN and lets in only replies', async t => {
  const r = edgeRules(internetPlan())
  t.match(r, /oifname "inet0" ip saddr 198\.18\.233\.0\/24 masquerade/)
  t.match(r, /chain input \{[^}]*iifname "inet0" ct state established,related accept\s+iifname "inet0" drop/)
  t.match(r, /chain forward \{[^}]*iifname "inet0" ct state established,related accept\s+iifname "inet0" drop/)
})

t.test('the gateway: 1:1 NAT and the security group\'s CIDR rules, nothing else new gets in', async t => {
  const r = gatewayRules([{
    privateIp: '198.18.200.10',
    publicIp: '198.18.232.10',
    ingress: [
      { proto: 'tcp', from: 22, to: 22, cidrs: ['198.18.232.1/32'], groups: [] },
      { proto: 'udp', from: 1194, to: 1257, cidrs: ['198.18.232.1/32'], groups: ['sg-1'] },
      { proto: 'udp', from: 4789, to: 4789, cidrs: [], groups: ['sg-1'] },
      { proto: '-1', from: -1, to: -1, cidrs: ['203.0.113.0/24'], groups: [] },
      { proto: 'icmp', from: -1, to: -1, cidrs: ['0.0.0.0/0'], groups: [] }
    ]
  }])
  t.match(r, /iifname "igw0" ip daddr 198\.18\.232\.10 dnat to 198\.18\.200\.10/)
  t.match(r, /oifname "igw0" ip saddr 198\.18\.200\.10 snat to 198\.18\.232\.10/)
  const allow = r.split('\n').filter(l => l.includes(' accept') && l.includes('daddr 198.18.200.10')).map(l => l.trim())
  t.same(allow, [
    'iifname "igw0" ip daddr 198.18.200.10 ip saddr 198.18.232.1/32 tcp dport 22 accept',
    'iifname "igw0" ip daddr 198.18.200.10 ip saddr 198.18.232.1/32 udp dport 1194-1257 accept',
    'iifname "igw0" ip daddr 198.18.200.10 ip saddr 203.0.113.0/24 accept',
    'iifname "igw0" ip daddr 198.18.200.10 ip saddr 0.0.0.0/0 meta l4proto icmp accept'
  ], 'group-to-group rules never match internet traffic')
  t.match(r, /accept\n\s+iifname "igw0" drop\n\s+\}\n\}/, 'then everything else from the internet is dropped')
  t.notMatch(gatewayRules([]), /dnat|snat/, 'no instance, no NAT')
})
