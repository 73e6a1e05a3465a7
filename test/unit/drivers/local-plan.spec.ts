import t from 'tap'
import { allocateHostAddress, delayRouting, planNetwork, sitePlan, tbfArgs } from '../../../drivers/local/plan.ts'

t.test('malformed addresses handed to the driver are LocalDriverErrors', async t => {
  t.throws(() => allocateHostAddress({ subnet: '198.18.1.0', gateway: '198.18.1.1', host: 'a', siteHosts: [], assigned: {} }), { code: 'SC_LOCAL_DRIVER', message: /not an IPv4 CIDR/ })
  t.throws(() => allocateHostAddress({ subnet: '198.18.1.0/24', gateway: '300.1.1.1', host: 'a', siteHosts: [], assigned: {} }), { code: 'SC_LOCAL_DRIVER', message: /not an IPv4 address/ })
  t.throws(() => planNetwork('p', { a: { name: 'a', subnet: '198.18.1.0/24', gateway: '198.18.1' } }, { delayMs: 0 }), { code: 'SC_LOCAL_DRIVER' })
  t.equal(planNetwork('p', { a: { name: 'a', subnet: '198.18.1.77/24' } }, { delayMs: 0 }).sites[0]?.subnet, '198.18.1.0/24', 'a subnet with host bits is reduced to its network')
})

t.test('network plan: sites in name order, /30 transit links, gateways', async t => {
  const plan = planNetwork('sct1a2b', {
    west: { name: 'west', subnet: '198.18.2.0/24', gateway: '198.18.2.254' },
    east: { name: 'east', subnet: '198.18.1.0/24' },
    aws: { name: 'aws' }
  }, { delayMs: 10, bandwidthBps: 100e6 })
  t.equal(plan.wanNs, 'sct1a2b-wan')
  t.same(plan.sites.map(s => [s.site, s.ns, s.gateway, s.transitWan, s.transitSite, s.wanLink]), [
    ['east', 'sct1a2b-s-east', '198.18.1.1', '198.19.255.1', '198.19.255.2', 's-east'],
    ['west', 'sct1a2b-s-west', '198.18.2.254', '198.19.255.5', '198.19.255.6', 's-west']
  ])
  t.equal(plan.bandwidthBps, 100e6)
  t.equal(sitePlan(plan, 'west').prefixLen, 24)
  t.throws(() => sitePlan(plan, 'aws'), { code: 'SC_LOCAL_DRIVER' }, 'a site without subnet has no plan')
})

t.test('network plan rejects overlapping or unusable subnets', async t => {
  t.throws(() => planNetwork('p', { a: { name: 'a', subnet: '198.18.0.0/16' }, b: { name: 'b', subnet: '198.18.5.0/24' } }, { delayMs: 0 }), /overlaps site a/)
  t.throws(() => planNetwork('p', { a: { name: 'a', subnet: '198.19.255.0/25' } }, { delayMs: 0 }), /transit/)
  t.throws(() => planNetwork('p', { a: { name: 'a', subnet: '198.18.1.0/24', gateway: '198.18.2.1' } }, { delayMs: 0 }), /gateway/)
  t.throws(() => planNetwork('p', { a: { name: 'a', subnet: '198.18.1.0/31' } }, { delayMs: 0 }), /too small/)
})

t.test('tbf arguments', async t => {
  t.same(tbfArgs('s-east', 100_000_000), ['tc', 'qdisc', 'replace', 'dev', 's-east', 'root', 'tbf', 'rate', '100000000bit', 'burst', '125000', 'latency', '100ms'])
  t.equal(tbfArgs('s-east', 1_000_000)[10], String(4 * 1514), 'burst holds at least 4 frames')
  t.throws(() => tbfArgs('s-east', 100))
})

t.test('delay routing sends traffic from every site link into the TUN', async t => {
  const plan = planNetwork('p', { a: { name: 'a', subnet: '198.18.1.0/24' }, b: { name: 'b', subnet: '198.18.2.0/24' } }, { delayMs: 5 })
  const r = delayRouting(plan)
  t.same(r.rules, [['rule', 'add', 'pref', '1000', 'iif', 's-a', 'lookup', '100'], ['rule', 'add', 'pref', '1001', 'iif', 's-b', 'lookup', '100']])
  t.same(r.route, ['route', 'replace', 'default', 'dev', 'dly0', 'table', '100'])
})

t.test('host addresses', async t => {
  const base = { subnet: '198.18.1.0/24', gateway: '198.18.1.1', assigned: {} }
  const hosts = [{ name: 'c' }, { name: 'a' }, { name: 'b' }]
  t.equal(allocateHostAddress({ ...base, host: 'a', siteHosts: hosts }), '198.18.1.10')
  t.equal(allocateHostAddress({ ...base, host: 'b', siteHosts: hosts }), '198.18.1.11')
  t.equal(allocateHostAddress({ ...base, host: 'c', siteHosts: hosts }), '198.18.1.12', '.10 + index in name order')
  t.equal(allocateHostAddress({ ...base, host: 'z', siteHosts: [] }), '198.18.1.10', 'a host unknown to the context still gets one')
  t.equal(allocateHostAddress({ ...base, host: 'b', explicit: '198.18.1.50', siteHosts: hosts }), '198.18.1.50', 'explicit address wins')
  t.equal(allocateHostAddress({ ...base, host: 'c', siteHosts: [{ name: 'a', explicit: '198.18.1.10' }, { name: 'b' }, { name: 'c' }] }), '198.18.1.12', 'explicit addresses of others are skipped')
  t.equal(allocateHostAddress({ ...base, host: 'a', siteHosts: hosts, assigned: { a: '198.18.1.33' } }), '198.18.1.33', 'a remembered address is kept')
  t.equal(allocateHostAddress({ ...base, host: 'aa', siteHosts: [...hosts, { name: 'aa' }], assigned: { a: '198.18.1.10', b: '198.18.1.11', c: '198.18.1.12' } }), '198.18.1.13', 'a new host does not move existing ones')
  t.equal(allocateHostAddress({ ...base, gateway: '198.18.1.10', host: 'a', siteHosts: [] }), '198.18.1.11', 'the gateway is never handed out')
  t.throws(() => allocateHostAddress({ ...base, host: 'a', explicit: '198.18.2.5', siteHosts: [] }), { code: 'SC_LOCAL_DRIVER' })
  t.throws(() => allocateHostAddress({ ...base, host: 'a', explicit: '198.18.1.1', siteHosts: [] }), /not a free host address/)
  t.throws(() => allocateHostAddress({ subnet: '198.18.1.0/28', gateway: '198.18.1.1', host: 'i', siteHosts: ['d', 'e', 'f', 'g', 'h', 'i'].map(name => ({ name })), assigned: {} }), /no free address/, 'a /28 holds 5 allocated hosts (.10-.14)')
})
