/**
 * ec2 hosts and the price table in supercloud.yaml: the shape the ec2 driver takes
 * (docs/ec2.md), its errors at file:line:column, and `prices:`.
 */
import t from 'tap'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import type { SpecIssue } from '../../../core/errors.ts'
import type { HostSpec } from '../../../core/spec.ts'
import { specIssues } from './issues.ts'

const G = 1024 ** 3

const issuesOf = (text: string, file = '/specs/s.yaml'): SpecIssue[] => specIssues(text, file)

/** Only the parts a test looks at. */
const brief = (issues: SpecIssue[]): Array<[number, number, string, string]> => issues.map(i => [i.line, i.column, i.field, i.message])

/** A spec with one ec2 host whose `ec2:` line is `ec2Line` (line 8) and extra host keys before it. */
function withHost (ec2Line: string, extra = ''): string {
  return `sites:
  aws: {}
hosts:
  aws1:
    site: aws
    driver: ec2
${extra}    cpus: 8
    ${ec2Line}
`
}

t.test('the shape of docs/ec2.md parses to HostSpec.ec2', async t => {
  const spec = parseSpec(`sites:
  aws: {}                # an ec2 site needs no subnet
hosts:
  aws1:
    site: aws
    driver: ec2
    cpus: 8
    memory: 30G
    ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.2xlarge, spot: false, sshFrom: 203.0.113.7/32, subnetId: subnet-0abc1234, endpoint: http://127.0.0.1:1234, user: root }
`, '/specs/s.yaml')
  const expected: HostSpec = {
    name: 'aws1',
    site: 'aws',
    driver: 'ec2',
    cpus: 8,
    memoryBytes: 30 * G,
    hypervisor: { backend: 'qemu', accel: 'auto' },
    ec2: { region: 'eu-west-1', ami: 'ami-0123456789abcdef0', instanceType: 'm5.2xlarge', spot: false, sshFrom: '203.0.113.7/32', subnetId: 'subnet-0abc1234', endpoint: 'http://127.0.0.1:1234', user: 'root' }
  }
  t.strictSame(spec.hosts.aws1, expected)
  t.strictSame(spec.sites.aws, { name: 'aws' }, 'the site has no subnet and no gateway')
  t.equal(spec.prices, undefined, 'no price table: the built-in one')
})

t.test('only region, ami and instanceType are needed; the block form works too', async t => {
  const spec = parseSpec(`sites: { aws: }
hosts:
  a1:
    site: aws
    driver: ec2
    ec2:
      region: us-east-1
      ami: ami-0d5eb1a2
      instanceType: t3.micro
`, '/specs/s.yaml')
  t.strictSame(spec.hosts.a1?.ec2, { region: 'us-east-1', ami: 'ami-0d5eb1a2', instanceType: 't3.micro' })
  t.equal(spec.hosts.a1?.local, undefined)
  t.equal(spec.hosts.a1?.ssh, undefined)
})

t.test('sshFrom: an address becomes a /32', async t => {
  const spec = parseSpec(withHost('ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large, sshFrom: 203.0.113.7 }'), '/specs/s.yaml')
  t.equal(spec.hosts.aws1?.ec2?.sshFrom, '203.0.113.7/32')
})

t.test('a mixed spec: local site with a subnet, ec2 site without', async t => {
  const spec = parseSpec(`sites:
  lab: { subnet: 198.18.60.0/24 }
  aws: {}
hosts:
  l1: { site: lab }
  a1: { site: aws, driver: ec2, ec2: { region: us-east-1, ami: ami-0d5eb1a2c3d4e5f60, instanceType: t3.micro } }
images: { tiny: { builtin: tiny } }
vms:
  v1: { image: tiny, host: a1, memory: 64M, nics: [{ address: 198.18.61.10/24 }] }
  v2: { image: tiny, host: l1, memory: 64M }
`, '/specs/s.yaml')
  t.same(Object.values(spec.hosts).map(h => [h.name, h.driver]), [['l1', 'local'], ['a1', 'ec2']])
})

t.test('ec2: required iff driver is ec2', async t => {
  t.same(brief(issuesOf(`sites: { aws: }
hosts:
  aws1:
    site: aws
    driver: ec2
`)), [[3, 3, 'hosts.aws1', "hosts with 'driver: ec2' need an 'ec2' section with region, ami and instanceType"]])
  t.same(brief(issuesOf(`sites: { lab: { subnet: 198.18.60.0/24 } }
hosts:
  l1:
    site: lab
    ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large }
`)), [[5, 5, 'hosts.l1.ec2', "ec2 settings are only used with 'driver: ec2'"]])
  t.same(brief(issuesOf(`sites: { priv: }
hosts:
  s1:
    site: priv
    driver: ssh
    ssh: { address: 192.0.2.10, key: k }
    ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large }
`)), [[7, 5, 'hosts.s1.ec2', "ec2 settings are only used with 'driver: ec2'"]])
})

t.test('missing required ec2 fields', async t => {
  t.same(brief(issuesOf(withHost('ec2: { region: eu-west-1, ami: ami-0123456789abcdef0 }'))),
    [[8, 5, 'hosts.aws1.ec2', "missing required field 'instanceType'"]])
  t.same(brief(issuesOf(withHost('ec2: {}'))).map(i => i[3]).sort(),
    ["missing required field 'ami'", "missing required field 'instanceType'", "missing required field 'region'"])
})

t.test('unknown keys are errors at the key, with a suggestion', async t => {
  const typo = 'ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large, instancetyp: x }'
  t.same(brief(issuesOf(withHost(typo))),
    [[8, 5 + typo.indexOf('instancetyp'), 'hosts.aws1.ec2.instancetyp', "unknown key 'instancetyp' (did you mean 'instanceType'?)"]])
  const block = issuesOf(`sites: { aws: }
hosts:
  aws1:
    site: aws
    driver: ec2
    ec2:
      region: eu-west-1
      ami: ami-0123456789abcdef0
      instanceType: m5.large
      keyName: mine
`)
  t.equal(block.length, 1)
  t.match(block[0], { line: 10, column: 7, field: 'hosts.aws1.ec2.keyName', message: /^unknown key 'keyName'; known keys: region, ami, instanceType, spot, sshFrom, subnetId, endpoint, user$/ })
  t.same(brief(issuesOf('sites: { aws: }\nhosts:\n  a: { site: aws, driver: ec3 }\n')),
    [[3, 27, 'hosts.a.driver', "expected one of local, ssh, ec2, got 'ec3' (did you mean 'ec2'?)"]])
})

t.test('bad values, each at its own position', async t => {
  const line = 'ec2: { region: eu-west, ami: ami-12, instanceType: large, spot: yes, sshFrom: 203.0.113.7/24, subnetId: subnet-0abc, endpoint: ec2.local, user: Root }'
  const got = brief(issuesOf(withHost(line)))
  const col = (s: string): number => 5 + line.indexOf(s) // withHost indents the line by 4
  t.same(got, [
    [8, col('eu-west'), 'hosts.aws1.ec2.region', "'eu-west' is not an AWS region name (e.g. eu-west-1)"],
    [8, col('ami-12'), 'hosts.aws1.ec2.ami', "'ami-12' is not an AMI id (ami- and 8 or 17 hex digits, e.g. ami-0123456789abcdef0)"],
    [8, col('large'), 'hosts.aws1.ec2.instanceType', "'large' is not an instance type (e.g. m5.large)"],
    [8, col('yes'), 'hosts.aws1.ec2.spot', "expected true or false, or a spot pool like { maxPrice: 0.05, instanceTypes: [t3.small, t3a.small] }, got 'yes'"],
    [8, col('203.0.113.7/24'), 'hosts.aws1.ec2.sshFrom', '203.0.113.7/24 has host bits set; did you mean 203.0.113.0/24, or 203.0.113.7/32?'],
    [8, col('subnet-0abc'), 'hosts.aws1.ec2.subnetId', "'subnet-0abc' is not a subnet id (subnet- and 8 or 17 hex digits)"],
    [8, col('ec2.local'), 'hosts.aws1.ec2.endpoint', "'ec2.local' is not an http(s) URL (e.g. https://ec2.eu-west-1.amazonaws.com)"],
    [8, col('Root'), 'hosts.aws1.ec2.user', "'Root' is not a user name (lower-case letters, digits, '.', '_', '-'; starting with a letter or '_'; at most 32 characters)"]
  ].sort((a, b) => (a[1] as number) - (b[1] as number)))
  const bad = 'ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large, sshFrom: anywhere }'
  t.same(brief(issuesOf(withHost(bad))),
    [[8, 5 + bad.indexOf('anywhere'), 'hosts.aws1.ec2.sshFrom', "expected an IPv4 address or CIDR (who may SSH in) like 203.0.113.7/32, got 'anywhere'"]])
})

t.test('spot: a pool of other instance types and a maximum price (spot implied)', async t => {
  const spec = parseSpec(withHost('ec2: { region: us-east-1, ami: ami-0d5eb1a2, instanceType: t3.small, spot: { maxPrice: 0.01, instanceTypes: [t3a.small, m5.large] } }'), '/specs/s.yaml')
  t.strictSame(spec.hosts.aws1?.ec2, { region: 'us-east-1', ami: 'ami-0d5eb1a2', instanceType: 't3.small', spot: true, spotPool: { maxPrice: 0.01, instanceTypes: ['t3a.small', 'm5.large'] } })
  t.strictSame(parseSpec(withHost('ec2: { region: us-east-1, ami: ami-0d5eb1a2, instanceType: t3.small, spot: { maxPrice: "$0.02" } }'), '/specs/s.yaml').hosts.aws1?.ec2?.spotPool, { maxPrice: 0.02, instanceTypes: [] })
  const block = `sites: { aws: }
hosts:
  aws1:
    site: aws
    driver: ec2
    ec2:
      region: us-east-1
      ami: ami-0d5eb1a2
      instanceType: t3.small
      spot:
        maxPrice: cheap
        instanceTypes: [t3a.small, large, t3.small, t3a.small]
        zone: a
`
  t.same(brief(issuesOf(block)), [
    [11, 19, 'hosts.aws1.ec2.spot.maxPrice', "expected a price in USD per hour above 0 like 0.05, got 'cheap'"],
    [12, 36, 'hosts.aws1.ec2.spot.instanceTypes[1]', "'large' is not an instance type (e.g. m5.large)"],
    [12, 43, 'hosts.aws1.ec2.spot.instanceTypes[2]', "t3.small is the host's own instanceType; list the other types a replacement may be"],
    [12, 53, 'hosts.aws1.ec2.spot.instanceTypes[3]', 't3a.small is listed twice'],
    [13, 9, 'hosts.aws1.ec2.spot.zone', "unknown key 'zone'; known keys: maxPrice, instanceTypes"]
  ].sort((a, b) => (a[0] as number) - (b[0] as number) || (a[1] as number) - (b[1] as number)))
  t.same(brief(issuesOf(withHost('ec2: { region: us-east-1, ami: ami-0d5eb1a2, instanceType: t3.small, spot: { maxPrice: -1, instanceTypes: t3a.small } }'))).map(i => [i[2], i[3]]), [
    ['hosts.aws1.ec2.spot.maxPrice', 'expected a price in USD per hour above 0 like 0.05, got -1'],
    ['hosts.aws1.ec2.spot.instanceTypes', "expected a list of instance types like [t3.small, t3a.small], got 't3a.small'"]
  ])
})

t.test('ec2 hosts: no address, no ssh section, no site shared with local hosts', async t => {
  const ok = 'ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large }'
  t.same(brief(issuesOf(withHost(ok, '    address: 198.18.1.10\n'))),
    [[7, 5, 'hosts.aws1.address', "'address' is for local hosts; EC2 gives an ec2 host its addresses"]])
  t.same(brief(issuesOf(withHost(ok, '    ssh: { address: 192.0.2.1, key: k }\n'))),
    [[7, 5, 'hosts.aws1.ssh', "ssh settings are only used with 'driver: ssh' (an ec2 host's SSH user is ec2.user)"]])
  t.same(brief(issuesOf(`sites: { lab: { subnet: 198.18.60.0/24 } }
hosts:
  l1: { site: lab }
  a1: { site: lab, driver: ec2, ${ok} }
`)), [[4, 15, 'hosts.a1.site', "site 'lab' has local host 'l1'; put ec2 hosts in a site of their own (EC2 gives their addresses, not 198.18.60.0/24)"]])
  t.same(brief(issuesOf(`hosts:\n  a1: { site: aws, driver: ec2, ${ok} }\n`)),
    [[2, 15, 'hosts.a1.site', "unknown site 'aws'; no sites are defined"]])
})

t.test('prices: a path resolved against the spec file', async t => {
  t.equal(parseSpec('prices: my-prices.json\n', '/specs/s.yaml').prices, '/specs/my-prices.json')
  t.equal(parseSpec('prices: /etc/prices.json\n', '/specs/s.yaml').prices, '/etc/prices.json')
  t.equal(parseSpec('prices: ~/p.json\n', '/specs/s.yaml', { homeDir: '/home/me' }).prices, '/home/me/p.json')
  t.same(brief(issuesOf('prices: 5\n')), [[1, 9, 'prices', 'expected text, got 5']])
  t.same(brief(issuesOf('price: p.json\n')).map(i => i.slice(0, 3)), [[1, 1, 'price']])
  t.match(issuesOf('price: p.json\n')[0]?.message, /did you mean 'prices'/)
})
