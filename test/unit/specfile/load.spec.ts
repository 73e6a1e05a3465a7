import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { loadSpec, parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { sanitizeName } from '../../../blanket-manager/specfile/names.ts'
import { SpecError, type SpecIssue } from '../../../core/errors.ts'
import type { Spec } from '../../../core/spec.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const example = (name: string): string => path.relative(process.cwd(), path.join(root, 'examples', name))
const M = 1024 ** 2
const G = 1024 ** 3

/** The issues of a spec that must fail. */
function issuesOf (fn: () => unknown): SpecIssue[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof SpecError) return err.issues
    throw err
  }
  throw new Error('expected a SpecError')
}

async function issuesOfFile (file: string): Promise<SpecIssue[]> {
  try {
    await loadSpec(file)
  } catch (err) {
    if (err instanceof SpecError) return err.issues
    throw err
  }
  throw new Error(`expected ${file} to be rejected`)
}

t.test('examples/local.yaml parses to the expected normalized spec', async t => {
  const file = example('local.yaml')
  const spec = await loadSpec(file)
  const host = (name: string, site: string): Spec['hosts'][string] => ({
    name, site, driver: 'local', cpus: 2, memoryBytes: 2 * G, hypervisor: { backend: 'qemu', accel: 'auto' }, local: {}
  })
  const expected: Spec = {
    file: path.join(root, 'examples/local.yaml'),
    name: 'local',
    sites: {
      'cloud-a': { name: 'cloud-a', subnet: '198.18.1.0/24', gateway: '198.18.1.1' },
      'cloud-b': { name: 'cloud-b', subnet: '198.18.2.0/24', gateway: '198.18.2.1' }
    },
    wan: { bandwidthBps: 200_000_000, delayMs: 5 },
    hosts: { 'host-a': host('host-a', 'cloud-a'), 'host-b': host('host-b', 'cloud-a'), 'host-c': host('host-c', 'cloud-b') },
    images: { tiny: { name: 'tiny', kind: 'builtin', builtin: 'tiny' } },
    vms: {
      web1: { name: 'web1', image: 'tiny', host: 'host-a', cpus: 1, memory: { requestedBytes: 128 * M, allocatedBytes: 128 * M }, disks: [], nics: [{ name: 'eth0', address: '198.18.1.101/24' }] },
      app1: { name: 'app1', image: 'tiny', host: 'host-b', cpus: 1, memory: { requestedBytes: 160 * M, allocatedBytes: 160 * M }, disks: [], nics: [{ name: 'eth0', address: '198.18.1.102/24' }] },
      db1: { name: 'db1', image: 'tiny', host: 'host-c', cpus: 1, memory: { requestedBytes: 192 * M, allocatedBytes: 192 * M }, disks: [{ name: 'data', sizeBytes: 64 * M }], nics: [{ name: 'eth0', address: '198.18.2.101/24' }] }
    },
    network: { port: 4789, switches: {}, wires: [], extenders: {} }
  }
  t.strictSame(spec, expected)
  t.strictSame(Object.keys(spec.vms), ['web1', 'app1', 'db1'], 'file order is kept')
})

t.test('the format example of the spec reference parses, with defaults and resolved paths', async t => {
  const text = `
sites:
  cloud-a: { subnet: 198.18.1.0/24 }
  cloud-b: { subnet: 198.18.2.0/24, gateway: 198.18.2.254 }
  private: {}
wan: { bandwidth: 200mbit, delay: 5ms }
hosts:
  host-a: { site: cloud-a }
  host-b: { site: cloud-a, cpus: 2, memory: 2G, address: 198.18.1.11, hypervisor: { accel: tcg } }
  srv1:   { site: private, driver: ssh, ssh: { address: 192.0.2.10, user: root, key: ~/.ssh/id_ed25519, port: 22 } }
  srv2:   { site: private, driver: ssh, ssh: { address: srv2.example.net, key: keys/srv2, guestBridge: br0 } }
images:
  tiny: { builtin: tiny }
  deb:  { qcow2: ./debian.qcow2 }
  k:    { kernel: ./vmlinuz, initrd: ./initrd.img, append: "console=ttyS0" }
  k2:   { kernel: /boot/vmlinuz }
vms:
  web1:
    image: tiny
    host: host-a
    cpus: 2
    memory: { requested: 1024M, allocated: 512M }
    disks: [ { name: data, size: 64M }, { size: 1G } ]
    nics:  [ { name: eth0, address: 198.18.1.101/24, mac: "52:54:00:AB:CD:EF" }, {} ]
  web2: { image: deb, memory: { requested: 256M } }
  web3: { image: k, memory: 1073741824, nics: [] }
`
  const spec = parseSpec(text, 'projects/My Cloud_1/supercloud.yaml', { homeDir: '/home/me' })
  const dir = path.resolve('projects/My Cloud_1')
  t.equal(spec.name, 'my-cloud-1', 'name defaults to the sanitized directory name')
  t.equal(spec.file, path.join(dir, 'supercloud.yaml'))
  t.strictSame(spec.sites['cloud-b'], { name: 'cloud-b', subnet: '198.18.2.0/24', gateway: '198.18.2.254' })
  t.strictSame(spec.sites.private, { name: 'private' })
  t.strictSame(spec.hosts['host-b'], {
    name: 'host-b', site: 'cloud-a', driver: 'local', cpus: 2, memoryBytes: 2 * G, hypervisor: { backend: 'qemu', accel: 'tcg' }, local: { address: '198.18.1.11' }
  })
  t.strictSame(spec.hosts.srv1, {
    name: 'srv1', site: 'private', driver: 'ssh', cpus: 2, memoryBytes: 2 * G, hypervisor: { backend: 'qemu', accel: 'auto' },
    ssh: { address: '192.0.2.10', port: 22, user: 'root', key: '/home/me/.ssh/id_ed25519' }
  })
  t.strictSame(spec.hosts.srv2?.ssh, { address: 'srv2.example.net', port: 22, user: 'root', key: path.join(dir, 'keys/srv2'), guestBridge: 'br0' })
  t.strictSame(spec.images.deb, { name: 'deb', kind: 'qcow2', path: path.join(dir, 'debian.qcow2') })
  t.strictSame(spec.images.k, { name: 'k', kind: 'kernel', kernel: path.join(dir, 'vmlinuz'), initrd: path.join(dir, 'initrd.img'), append: 'console=ttyS0' })
  t.strictSame(spec.images.k2, { name: 'k2', kind: 'kernel', kernel: '/boot/vmlinuz' })
  t.strictSame(spec.vms.web1, {
    name: 'web1', image: 'tiny', host: 'host-a', cpus: 2,
    memory: { requestedBytes: 1024 * M, allocatedBytes: 512 * M },
    disks: [{ name: 'data', sizeBytes: 64 * M }, { name: 'disk1', sizeBytes: G }],
    nics: [{ name: 'eth0', address: '198.18.1.101/24', mac: '52:54:00:ab:cd:ef' }, { name: 'eth1' }]
  })
  t.strictSame(spec.vms.web2, { name: 'web2', image: 'deb', cpus: 1, memory: { requestedBytes: 256 * M, allocatedBytes: 256 * M }, disks: [], nics: [{ name: 'eth0' }] })
  t.strictSame(spec.vms.web3?.nics, [], 'nics: [] means no NICs')
  t.strictSame(spec.vms.web3?.memory, { requestedBytes: G, allocatedBytes: G }, 'plain integer bytes')
})

t.test('minimal specs', async t => {
  const spec = parseSpec('sites:\nhosts:\nvms:\n', '/tmp/x/supercloud.yaml')
  t.strictSame(spec, { file: '/tmp/x/supercloud.yaml', name: 'x', sites: {}, wan: { delayMs: 0 }, hosts: {}, images: {}, vms: {}, network: { port: 4789, switches: {}, wires: [], extenders: {} } })
  t.equal(parseSpec('name: prod\n', '/a/b.yaml').name, 'prod')
  t.equal(parseSpec('x-defaults: &d { image: tiny, memory: 64M }\nimages: { tiny: { builtin: tiny } }\nvms:\n  a: *d\n', '/a/b.yaml').vms.a?.memory.requestedBytes, 64 * M, 'x- keys hold shared anchors')
})

t.test('sanitizeName', async t => {
  t.equal(sanitizeName('My Cloud_1'), 'my-cloud-1')
  t.equal(sanitizeName('2024-lab'), 'lab')
  t.equal(sanitizeName('a-very-long-directory-name-indeed'), 'a-very-long-director')
  t.equal(sanitizeName('___'), 'supercloud')
  t.equal(sanitizeName('examples'), 'examples')
})

interface BadCase { file: string, line: number, column: number, field: string, message: string | RegExp }
const bad: BadCase[] = [
  { file: 'wrong-type.yaml', line: 11, column: 11, field: 'vms.web1.cpus', message: "expected a whole number, got 'two'" },
  { file: 'bad-size.yaml', line: 12, column: 13, field: 'vms.web1.memory', message: "expected a size like 512M, got '12 potatoes'" },
  { file: 'unknown-key.yaml', line: 5, column: 28, field: 'hosts.host-a.memroy', message: "unknown key 'memroy' (did you mean 'memory'?)" },
  { file: 'missing-field.yaml', line: 9, column: 3, field: 'vms.web1', message: "missing required field 'image'" },
  { file: 'unknown-image.yaml', line: 9, column: 18, field: 'vms.web1.image', message: "unknown image 'tyni' (did you mean 'tiny'?)" },
  { file: 'unknown-host.yaml', line: 9, column: 30, field: 'vms.web1.host', message: "unknown host 'host-z' (did you mean 'host-a'?)" },
  { file: 'unknown-site.yaml', line: 6, column: 19, field: 'hosts.host-a.site', message: "unknown site 'cloud-c' (did you mean 'cloud-a'?)" },
  { file: 'allocated-above-requested.yaml', line: 11, column: 43, field: 'vms.web1.memory.allocated', message: '1G is above requested 512M' },
  { file: 'overlapping-subnets.yaml', line: 4, column: 22, field: 'sites.cloud-b.subnet', message: "198.18.1.0/24 overlaps 198.18.0.0/23 of site 'cloud-a'" },
  { file: 'duplicate-address.yaml', line: 16, column: 36, field: 'vms.app1.nics[0].address', message: "198.18.1.101 is already used by vm 'web1' (nic eth0)" },
  { file: 'bad-cidr.yaml', line: 3, column: 22, field: 'sites.cloud-a.subnet', message: "expected an IPv4 address with prefix like 198.18.1.0/24, got '198.18.1.300/24'" },
  { file: 'syntax.yaml', line: 4, column: 1, field: '(yaml)', message: /Flow map .* end with a \}/ },
  { file: 'local-host-without-subnet.yaml', line: 5, column: 19, field: 'hosts.host-a.site', message: "local hosts need a site with a subnet; site 'private' has none" },
  { file: 'host-address-is-gateway.yaml', line: 5, column: 37, field: 'hosts.host-a.address', message: "198.18.1.1 is the gateway of site 'cloud-a'; pick another address" },
  { file: 'bad-name.yaml', line: 7, column: 3, field: 'vms.Web_1', message: /vm name 'Web_1' must use only lowercase letters, digits and '-'/ },
  { file: 'duplicate-nic-name.yaml', line: 10, column: 17, field: 'vms.web1.nics[1].name', message: "nic name 'eth0' is used twice in vm 'web1'" },
  { file: 'ssh-without-ssh-section.yaml', line: 5, column: 3, field: 'hosts.srv1', message: "hosts with 'driver: ssh' need an 'ssh' section with address and key" },
  { file: 'wire-crosses-sites.yaml', line: 18, column: 7, field: 'network.wires[1]', message: 'fw1.eth1 (site cloud-a) -- db1.eth0 (site cloud-b) crosses sites but site cloud-b has no extender' },
  { file: 'wire-unknown-nic.yaml', line: 14, column: 7, field: 'network.wires[0]', message: "vm 'web1' has no nic 'eth1'; its nics: eth0" }
]

for (const c of bad) {
  t.test(`examples/bad/${c.file}: one error at the right place`, async t => {
    const file = example(`bad/${c.file}`)
    const issues = await issuesOfFile(file)
    t.equal(issues.length, 1, `exactly one issue: ${JSON.stringify(issues)}`)
    const [issue] = issues
    t.match(issue, { file, line: c.line, column: c.column, field: c.field })
    if (typeof c.message === 'string') t.equal(issue?.message, c.message)
    else t.match(issue?.message, c.message)
  })
}

t.test('every examples/bad file is covered by a test', async t => {
  const { readdir } = await import('node:fs/promises')
  const files = (await readdir(path.join(root, 'examples/bad'))).filter(f => f.endsWith('.yaml')).sort()
  t.strictSame(files, [...bad.map(c => c.file), 'many-mistakes.yaml'].sort())
})

t.test('SpecError message reads file:line:column: field: message', async t => {
  const file = example('bad/bad-size.yaml')
  await t.rejects(loadSpec(file), {
    name: 'SpecError',
    code: 'SC_SPEC_INVALID',
    exitCode: 2,
    message: `${file}:12:13: vms.web1.memory: expected a size like 512M, got '12 potatoes'`
  })
})

t.test('several mistakes are reported together, sorted by line', async t => {
  const file = example('bad/many-mistakes.yaml')
  const issues = await issuesOfFile(file)
  t.strictSame(issues.map(i => [i.line, i.column, i.field, i.message]), [
    [5, 34, 'hosts.host-a.cpus', 'must be at least 1, got 0'],
    [11, 13, 'vms.web1.memory', "expected a size like 512M, got '12 potatoes'"],
    [13, 12, 'vms.app1.image', "unknown image 'tyni' (did you mean 'tiny'?)"],
    [16, 5, 'vms.app1.disk', "unknown key 'disk' (did you mean 'disks'?)"]
  ])
})

t.test('a missing file is a SpecError at line 0', async t => {
  const issues = await issuesOfFile('/nonexistent/supercloud.yaml')
  t.strictSame(issues, [{ file: '/nonexistent/supercloud.yaml', line: 0, column: 0, field: '(file)', message: 'spec file not found' }])
})

const images = 'images:\n  tiny: { builtin: tiny }\n'

t.test('YAML-level problems', async t => {
  t.match(issuesOf(() => parseSpec('', 'e.yaml')), [{ line: 1, column: 1, field: '(top level)', message: /the spec is empty/ }])
  t.match(issuesOf(() => parseSpec('- a\n- b\n', 'e.yaml')), [{ line: 1, column: 1, field: '(top level)', message: 'expected a map, got a list' }])
  t.match(issuesOf(() => parseSpec('sites:\n  a: {}\n  a: {}\n', 'e.yaml')), [{ line: 3, column: 3, field: '(yaml)', message: 'Map keys must be unique' }])
  // Duplicates anywhere (block and flow maps, nested), each at the repeated key; unlike values of one key are no duplicate.
  const dup = 'sites:\n  a: { subnet: 198.18.1.0/24, subnet: 198.18.2.0/24 }\n  b: {}\n  a: {}\nhosts: {}\nhosts: {}\nvms:\n  "1": {}\n  1: {}\n'
  t.same(issuesOf(() => parseSpec(dup, 'e.yaml')).map(i => [i.line, i.column, i.field, i.message]), [
    [2, 31, '(yaml)', 'Map keys must be unique'],
    [4, 3, '(yaml)', 'Map keys must be unique'],
    [6, 1, '(yaml)', 'Map keys must be unique']
  ])
  t.match(issuesOf(() => parseSpec('name: a\n---\nname: b\n', 'e.yaml')), [{ line: 2, field: '(yaml)', message: /multiple documents/ }])
  t.match(issuesOf(() => parseSpec('vm: {}\n', 'e.yaml')), [{ line: 1, column: 1, field: 'vm', message: "unknown key 'vm' (did you mean 'vms'?)" }])
  t.match(issuesOf(() => parseSpec('colour: blue\n', 'e.yaml')), [{ field: 'colour', message: "unknown key 'colour'; known keys: name, sites, wan, hosts, images, vms" }])
})

t.test('value problems found by the schema', async t => {
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  web1:\n    image: tiny\n    memory:\n`, 'e.yaml')),
    [{ line: 6, column: 5, field: 'vms.web1.memory', message: 'expected a size like 512M, got nothing' }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  web1: { image: tiny, memory: { alocated: 1G } }\n`, 'e.yaml')), [
    { line: 4, column: 24, field: 'vms.web1.memory', message: "missing required field 'requested'" },
    { line: 4, column: 34, field: 'vms.web1.memory.alocated', message: "unknown key 'alocated' (did you mean 'allocated'?)" }
  ])
  t.match(issuesOf(() => parseSpec('sites:\n  a: { subnet: 198.18.1.0/24 }\nhosts:\n  h: { site: a, driver: lcoal, hypervisor: { accel: tgc } }\n', 'e.yaml')), [
    { field: 'hosts.h.driver', message: "expected one of local, ssh, ec2, got 'lcoal' (did you mean 'local'?)" },
    { field: 'hosts.h.hypervisor.accel', message: "expected one of auto, kvm, tcg, got 'tgc' (did you mean 'tcg'?)" }
  ])
  t.match(issuesOf(() => parseSpec('wan: { bandwidth: 200mbps, delay: 5 parsecs }\n', 'e.yaml')), [
    { line: 1, column: 19, field: 'wan.bandwidth', message: /'mbps' is ambiguous; write 200mbit/ },
    { line: 1, column: 35, field: 'wan.delay', message: "expected a duration like 5ms, got '5 parsecs'" }
  ])
  t.match(issuesOf(() => parseSpec('sites:\n  p: {}\nhosts:\n  s: { site: p, driver: ssh, ssh: { address: 192.0.2.10, key: k, port: 99999 } }\n', 'e.yaml')),
    [{ field: 'hosts.s.ssh.port', message: 'must be at most 65535, got 99999' }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  a: { image: tiny, memory: 64M, disks: [ { size: 1G, name: x, type: ssd } ] }\n`, 'e.yaml')),
    [{ field: 'vms.a.disks[0].type', message: "unknown key 'type'; known keys: name, size" }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  a: { image: tiny, memory: 64M, nics: [ { address: 198.18.1.7 } ] }\n`, 'e.yaml')),
    [{ field: 'vms.a.nics[0].address', message: /add the prefix length, e\.g\. 198\.18\.1\.7\/24/ }])
  t.match(issuesOf(() => parseSpec('sites:\n  a: { subnet: 198.18.1.0/24 }\nhosts:\n  h: { site: a, address: 198.18.1.9/24 }\n', 'e.yaml')),
    [{ field: 'hosts.h.address', message: "expected an IPv4 address like 198.18.1.10 without a prefix, got '198.18.1.9/24'" }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  a: { image: tiny, memory: 64M, nics: [ { mac: "01:00:5e:00:00:01" } ] }\n`, 'e.yaml')),
    [{ field: 'vms.a.nics[0].mac', message: /multicast MAC address/ }])
})

t.test('semantic problems', async t => {
  const subnet = (s: string): string => `sites:\n  a: { subnet: ${s} }\n`
  t.match(issuesOf(() => parseSpec(subnet('198.18.1.5/24'), 'e.yaml')), [{ field: 'sites.a.subnet', message: '198.18.1.5/24 has host bits set; did you mean 198.18.1.0/24?' }])
  t.match(issuesOf(() => parseSpec(subnet('198.18.1.0/31'), 'e.yaml')), [{ field: 'sites.a.subnet', message: /no room/ }])
  t.match(issuesOf(() => parseSpec('sites:\n  a: { subnet: 198.18.1.0/24, gateway: 198.18.2.1 }\n', 'e.yaml')), [{ field: 'sites.a.gateway', message: 'gateway 198.18.2.1 is outside the site subnet 198.18.1.0/24' }])
  t.match(issuesOf(() => parseSpec('sites:\n  a: { subnet: 198.18.1.0/24, gateway: 198.18.1.255 }\n', 'e.yaml')), [{ field: 'sites.a.gateway', message: /broadcast address/ }])
  t.match(issuesOf(() => parseSpec('sites:\n  a: { gateway: 198.18.1.1 }\n', 'e.yaml')), [{ field: 'sites.a.gateway', message: 'a gateway needs a subnet on the same site' }])
  t.match(issuesOf(() => parseSpec(`${subnet('198.18.1.0/24')}hosts:\n  h: { site: a, address: 198.18.2.9 }\n`, 'e.yaml')), [{ field: 'hosts.h.address', message: "198.18.2.9 is outside the subnet 198.18.1.0/24 of site 'a'" }])
  t.match(issuesOf(() => parseSpec(`${subnet('198.18.1.0/24')}hosts:\n  h: { site: a, address: 198.18.1.9 }\n  i: { site: a, address: 198.18.1.9 }\n`, 'e.yaml')),
    [{ line: 5, field: 'hosts.i.address', message: "198.18.1.9 is already used by host 'h'" }])
  t.match(issuesOf(() => parseSpec(`${subnet('198.18.1.0/24')}hosts:\n  h: { site: a, address: 198.18.1.9 }\n${images}vms:\n  v: { image: tiny, memory: 64M, nics: [ { address: 198.18.1.9/24 } ] }\n`, 'e.yaml')),
    [{ field: 'vms.v.nics[0].address', message: "198.18.1.9 is already used by host 'h'" }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  v: { image: tiny, memory: 64M, nics: [ { mac: "52:54:00:00:00:01" } ] }\n  w: { image: tiny, memory: 64M, nics: [ { mac: "52:54:00:00:00:01" } ] }\n`, 'e.yaml')),
    [{ field: 'vms.w.nics[0].mac', message: "MAC address 52:54:00:00:00:01 is already used by vm 'v' (nic eth0)" }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  v: { image: tiny, memory: 64M, disks: [ { name: d, size: 1G }, { name: d, size: 0 } ] }\n`, 'e.yaml')), [
    { field: 'vms.v.disks[1].name', message: "disk name 'd' is used twice in vm 'v'" },
    { field: 'vms.v.disks[1].size', message: 'must be above 0' }
  ])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  v: { image: tiny, memory: 1000000 }\n`, 'e.yaml')), [{ field: 'vms.v.memory', message: /not a whole number of MiB/ }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  v: { image: tiny, memory: { requested: 1G, allocated: 0 } }\n`, 'e.yaml')), [{ field: 'vms.v.memory.allocated', message: 'must be above 0' }])
  t.match(issuesOf(() => parseSpec('wan: { bandwidth: 0 }\n', 'e.yaml')), [{ field: 'wan.bandwidth', message: /must be above 0/ }])
  t.match(issuesOf(() => parseSpec('images:\n  x: { qcow2: a.qcow2, kernel: k }\n  y: {}\n  z: { builtin: tiny, append: "quiet" }\n', 'e.yaml')), [
    { line: 2, field: 'images.x.kernel', message: "an image is either builtin, qcow2 or kernel; 'x' has both qcow2 and kernel" },
    { line: 3, field: 'images.y', message: 'an image needs one of builtin, qcow2 or kernel' },
    { line: 4, field: 'images.z.append', message: "'append' is only used with kernel images" }
  ])
  t.match(issuesOf(() => parseSpec('sites:\n  p: {}\nhosts:\n  s: { site: p, driver: ssh, address: 192.0.2.1, ssh: { address: 192.0.2.1, key: k } }\n', 'e.yaml')),
    [{ field: 'hosts.s.address', message: /'address' is for local hosts/ }])
  t.match(issuesOf(() => parseSpec(`${subnet('198.18.1.0/24')}hosts:\n  h: { site: a, ssh: { address: x, key: k } }\n`, 'e.yaml')),
    [{ field: 'hosts.h.ssh', message: "ssh settings are only used with 'driver: ssh'" }])
  t.match(issuesOf(() => parseSpec('name: Prod_1\n', 'e.yaml')), [{ field: 'name', message: /supercloud name 'Prod_1'/ }])
  t.match(issuesOf(() => parseSpec('sites:\n  a-site-name-that-is-too-long: {}\n', 'e.yaml')), [{ field: 'sites.a-site-name-that-is-too-long', message: /28 characters long; the limit is 20/ }])
  t.match(issuesOf(() => parseSpec(`${images}vms:\n  v: { image: tiny, memory: 64M, nics: [ { name: a-very-long-nic-name } ] }\n`, 'e.yaml')), [{ field: 'vms.v.nics[0].name', message: /limit is 15/ }])
})

t.test('a wan with fewer than two local sites is accepted', async t => {
  const spec = parseSpec('sites:\n  a: { subnet: 198.18.1.0/24 }\nwan: { delay: 100us }\n', 'e.yaml')
  t.equal(spec.wan.delayMs, 0.1)
  t.equal(spec.wan.bandwidthBps, undefined)
})

t.test('the complete example in docs/spec-reference.md is valid', async t => {
  const { readFile } = await import('node:fs/promises')
  const doc = await readFile(path.join(root, 'docs/spec-reference.md'), 'utf8')
  const block = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1]
  t.ok(block, 'found the example')
  const spec = parseSpec(block ?? '', path.join(root, 'docs/supercloud.yaml'), { homeDir: '/home/me' })
  t.equal(spec.name, 'example')
  t.strictSame(Object.keys(spec.vms), ['web1'])
  t.equal(spec.hosts.srv1?.ssh?.key, '/home/me/.ssh/id_ed25519')
})
