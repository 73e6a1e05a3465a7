import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { loadSpec, parseSpec } from '../../../../blanket-manager/specfile/load.ts'
import type { SpecIssue } from '../../../../core/errors.ts'
import {
  canonicalWire, crossSiteProblems, formatWire, parseWire, parseWireEnd, wireContext, wiredNics, wireKey, wireProblems
} from '../../../../virtualwire/topology/wires.ts'
import { specIssues } from '../../specfile/issues.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..')

/** The issues match `expected` one to one (t.match alone lets extra issues through). */
function exactly (t: Test, issues: SpecIssue[], expected: unknown[], message?: string): void {
  t.equal(issues.length, expected.length, `${message ?? 'issue count'}: ${JSON.stringify(issues)}`)
  t.match(issues, expected, message ?? 'issues')
}

const issuesOf = (text: string): SpecIssue[] => specIssues(text, 'n.yaml')

/** Two sites, three hosts, web1/app1 on sw1, fw1 with two NICs, db1; `network` is appended. */
const base = `sites:
  cloud-a: { subnet: 198.18.1.0/24 }
  cloud-b: { subnet: 198.18.2.0/24 }
hosts:
  host-a: { site: cloud-a }
  host-b: { site: cloud-a }
  host-c: { site: cloud-b }
images:
  tiny: { builtin: tiny }
vms:
  web1: { image: tiny, host: host-a, memory: 64M, nics: [ { name: eth0, address: 198.19.10.11/24 } ] }
  app1: { image: tiny, memory: 64M, nics: [ { name: eth0, address: 198.19.10.12/24 } ] }
  fw1:  { image: tiny, host: host-b, memory: 64M, nics: [ { name: eth0, address: 198.19.10.1/24 }, { name: eth1, address: 198.19.20.1/24 } ] }
  db1:  { image: tiny, host: host-c, memory: 64M, nics: [ { name: eth0, address: 198.19.20.21/24 } ] }
  lone: { image: tiny, memory: 64M }
`
const baseLines = base.split('\n').length - 1
/** A spec with `base` plus the given network lines (each indented by the caller). */
const withNetwork = (lines: string): string => `${base}network:\n${lines}`

t.test('examples/virtualwire.yaml parses to the expected network', async t => {
  const spec = await loadSpec(path.join(root, 'examples/virtualwire.yaml'))
  t.strictSame(spec.network, {
    port: 4789,
    switches: { sw1: { name: 'sw1', host: 'host-a' } },
    wires: [
      { a: { component: 'web1', port: 'eth0' }, b: { component: 'sw1', port: 'p1' } },
      { a: { component: 'app1', port: 'eth0' }, b: { component: 'sw1', port: 'p2' } },
      { a: { component: 'sw1', port: 'p3' }, b: { component: 'fw1', port: 'eth0' } },
      { a: { component: 'fw1', port: 'eth1' }, b: { component: 'db1', port: 'eth0' } }
    ],
    extenders: { 'cloud-a': { site: 'cloud-a', gateway: 'host-b' }, 'cloud-b': { site: 'cloud-b', gateway: 'host-c' } }
  })
  t.strictSame(spec.vms.fw1?.nics.map(n => n.address), ['198.19.10.2/24', '198.19.10.3/24'], 'wired NICs keep their spec addresses')
  t.strictSame(wiredNics(spec.network.wires, spec.vms), { web1: ['eth0'], app1: ['eth0'], fw1: ['eth0', 'eth1'], db1: ['eth0'] })
})

t.test('no network section, an empty one, and defaults', async t => {
  t.strictSame(parseSpec(base, 'n.yaml').network, { port: 4789, switches: {}, wires: [], extenders: {} })
  t.strictSame(parseSpec(`${base}network:\n`, 'n.yaml').network, { port: 4789, switches: {}, wires: [], extenders: {} })
  t.strictSame(parseSpec(withNetwork('  port: 8472\n  switches:\n  wires:\n  extenders:\n'), 'n.yaml').network, { port: 8472, switches: {}, wires: [], extenders: {} })
  const spec = parseSpec(withNetwork('  switches: { sw1: { host: host-a } }\n  wires: [ "web1.eth0--sw1.p1", "  sw1.p2   --   app1.eth0 " ]\n'), 'n.yaml')
  t.strictSame(spec.network.wires.map(formatWire), ['web1.eth0 -- sw1.p1', 'sw1.p2 -- app1.eth0'], 'spaces around -- are optional; ends keep the written order')
})

t.test('wire syntax', async t => {
  t.strictSame(parseWire('web1.eth0 -- sw1.p1'), { a: { component: 'web1', port: 'eth0' }, b: { component: 'sw1', port: 'p1' } })
  t.strictSame(parseWire('a-b.eth-0 -- c.p1'), { a: { component: 'a-b', port: 'eth-0' }, b: { component: 'c', port: 'p1' } })
  t.strictSame(parseWireEnd('sw1.p1'), { component: 'sw1', port: 'p1' })
  for (const [text, message] of [
    ['web1.eth0 sw1.p1', /expected '<component>\.<port> -- <component>\.<port>'/],
    ['web1.eth0 -- sw1.p1 -- x.y', /expected/],
    ['web1 -- sw1.p1', /'web1' needs a port/],
    ['web1.eth0 -- sw1', /'sw1' needs a port/],
    ['Web1.eth0 -- sw1.p1', /'Web1\.eth0' is not <component>\.<port>/],
    ['web1.eth0.1 -- sw1.p1', /not <component>\.<port>/],
    [' -- sw1.p1', /needs a port/]
  ] as const) {
    const r = parseWire(text)
    t.type(r, 'string', text)
    t.match(r, message, text)
    t.match(r, /^malformed wire '/)
  }
})

t.test('wire keys are canonical', async t => {
  const w = parseWire('web1.eth0 -- sw1.p1')
  const v = parseWire('sw1.p1 -- web1.eth0')
  if (typeof w === 'string' || typeof v === 'string') return t.fail('parse')
  t.equal(wireKey(w), 'sw1.p1 -- web1.eth0')
  t.equal(wireKey(w), wireKey(v))
  t.strictSame(canonicalWire(w), v)
})

t.test('validation errors, each with its position', async t => {
  const net = (lines: string): SpecIssue[] => issuesOf(withNetwork(lines))
  const L = baseLines + 1 // line of 'network:'

  exactly(t, net('  wires:\n    - web1.eth0 sw1.p1\n'), [{ line: L + 2, column: 7, field: 'network.wires[0]', message: /^malformed wire 'web1.eth0 sw1.p1': expected/ }])
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires:\n    - web1.eth0 -- sw1.p1\n    - wbe1.eth0 -- sw1.p2\n'),
    [{ line: L + 4, field: 'network.wires[1]', message: "unknown component 'wbe1' (did you mean 'web1'?)" }])
  exactly(t, net('  wires: [ "zzzzzz.eth0 -- web1.eth0" ]\n'), [{ field: 'network.wires[0]', message: "unknown component 'zzzzzz'; vms and switches: web1, app1, fw1, db1, lone" }])
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires: [ "fw1.eth2 -- sw1.p1" ]\n'), [{ field: 'network.wires[0]', message: "vm 'fw1' has no nic 'eth2'; its nics: eth0, eth1" }])
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires: [ "web1.eth0 -- sw1.port-1" ]\n'), [{ field: 'network.wires[0]', message: /switch port 'port-1' of 'sw1' must be 1-15 lowercase letters and digits/ }])
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires:\n    - web1.eth0 -- sw1.p1\n    - sw1.p2 -- web1.eth0\n'),
    [{ line: L + 4, field: 'network.wires[1]', message: 'web1.eth0 is already wired by network.wires[0] (web1.eth0 -- sw1.p1)' }], 'a NIC wired twice')
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires:\n    - web1.eth0 -- sw1.p1\n    - app1.eth0 -- sw1.p1\n'),
    [{ field: 'network.wires[1]', message: 'sw1.p1 is already wired by network.wires[0] (web1.eth0 -- sw1.p1)' }], 'a switch port wired twice')
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires:\n    - web1.eth0 -- sw1.p1\n    - web1.eth0 -- sw1.p1\n'),
    [{ field: 'network.wires[1]', message: /web1\.eth0 is already wired/ }, { field: 'network.wires[1]', message: /sw1\.p1 is already wired/ }], 'the same wire twice')
  exactly(t, net('  wires: [ "fw1.eth0 -- fw1.eth1" ]\n'), [{ field: 'network.wires[0]', message: "fw1.eth0 -- fw1.eth1 wires 'fw1' to itself" }])
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires: [ "sw1.p1 -- sw1.p2" ]\n'), [{ field: 'network.wires[0]', message: "sw1.p1 -- sw1.p2 wires 'sw1' to itself" }])
  exactly(t, net('  switches:\n    sw1: { host: host-z }\n'), [{ line: L + 2, field: 'network.switches.sw1.host', message: "unknown host 'host-z' (did you mean 'host-a'?)" }])
  exactly(t, net('  switches:\n    web1: { host: host-a }\n'), [{ line: L + 2, column: 5, field: 'network.switches.web1', message: "'web1' is already the name of a vm; a switch needs its own name" }])
  exactly(t, net('  switches:\n    Sw_1: { host: host-a }\n'), [{ field: 'network.switches.Sw_1', message: /switch name 'Sw_1' must use only lowercase/ }])
  exactly(t, net('  extenders:\n    cloud-a: { gateway: host-c }\n'),
    [{ line: L + 2, field: 'network.extenders.cloud-a.gateway', message: "host 'host-c' is in site 'cloud-b', not 'cloud-a'; an extender's gateway must be a host of its own site" }])
  exactly(t, net('  extenders:\n    cloud-a: { gateway: host-q }\n'), [{ field: 'network.extenders.cloud-a.gateway', message: /unknown host 'host-q'/ }])
  exactly(t, net('  extenders:\n    cloud-z: { gateway: host-a }\n'), [{ field: 'network.extenders.cloud-z', message: /unknown site 'cloud-z' \(did you mean 'cloud-a'\?\)/ }])
  exactly(t, net('  wires: [ "fw1.eth1 -- db1.eth0" ]\n'),
    [{ field: 'network.wires[0]', message: 'fw1.eth1 (site cloud-a) -- db1.eth0 (site cloud-b) crosses sites but sites cloud-a and cloud-b have no extender' }])
  exactly(t, net('  wires: [ "fw1.eth1 -- db1.eth0" ]\n  extenders: { cloud-b: { gateway: host-c } }\n'),
    [{ field: 'network.wires[0]', message: 'fw1.eth1 (site cloud-a) -- db1.eth0 (site cloud-b) crosses sites but site cloud-a has no extender' }])
  exactly(t, net('  switches: { sw1: { host: host-c } }\n  wires: [ "web1.eth0 -- sw1.p1" ]\n'),
    [{ field: 'network.wires[0]', message: 'web1.eth0 (site cloud-a) -- sw1.p1 (site cloud-b) crosses sites but sites cloud-a and cloud-b have no extender' }], 'switch ends count as placed')
  exactly(t, net('  switches: { sw1: { host: host-a } }\n  wires: [ "lone.eth0 -- sw1.p1" ]\n'),
    [{ field: 'network.wires[0]', message: /lone\.eth0 is on the virtual network but has no address/ }])
  exactly(t, net('  port: 0\n'), [{ field: 'network.port', message: 'must be at least 1, got 0' }])
  exactly(t, net('  wire: []\n'), [{ field: 'network.wire', message: "unknown key 'wire' (did you mean 'wires'?)" }])
  exactly(t, net('  switches: { sw1: {} }\n'), [{ field: 'network.switches.sw1', message: "missing required field 'host'" }])
  exactly(t, net('  wires: [ 7 ]\n'), [{ field: 'network.wires[0]', message: 'expected text, got 7' }])
})

t.test('a VM without host: is not cross-site checked by the loader (the planner does it after placement)', async t => {
  const spec = parseSpec(withNetwork('  switches: { sw1: { host: host-c } }\n  wires: [ "app1.eth0 -- sw1.p1" ]\n'), 'n.yaml')
  t.equal(spec.network.wires.length, 1)
  const ctx = wireContext(spec, { app1: 'host-a' })
  t.strictSame(crossSiteProblems(ctx, spec.network.wires), [{ index: 0, message: 'app1.eth0 (site cloud-a) -- sw1.p1 (site cloud-b) crosses sites but sites cloud-a and cloud-b have no extender' }])
  t.strictSame(crossSiteProblems(wireContext(spec, { app1: 'host-c' }), spec.network.wires), [], 'same site: fine')
})

t.test('several network mistakes are reported together', async t => {
  const issues = issuesOf(withNetwork('  switches: { sw1: { host: host-z } }\n  wires:\n    - web1.eth9 -- sw1.p1\n    - nope\n    - fw1.eth1 -- db1.eth0\n'))
  t.strictSame(issues.map(i => i.field), ['network.switches.sw1.host', 'network.wires[0]', 'network.wires[1]', 'network.wires[2]'])
})

t.test('wireProblems directly, with a hand-made context', async t => {
  const ctx = { vms: { v: { nics: [] } }, switches: {}, hostSites: {}, extenderSites: [], placement: {} }
  t.strictSame(wireProblems(ctx, [{ a: { component: 'v', port: 'eth0' }, b: { component: 'w', port: 'eth0' } }]), [
    { index: 0, message: "vm 'v' has no nic 'eth0'; it has no nics" },
    { index: 0, message: "unknown component 'w' (did you mean 'v'?)" }
  ])
  const empty = { vms: {}, switches: {}, hostSites: {}, extenderSites: [], placement: {} }
  t.match(wireProblems(empty, [{ a: { component: 'abcdef', port: 'x' }, b: { component: 'ghijkl', port: 'y' } }])[0]?.message, /no vms or switches are defined/)
})
