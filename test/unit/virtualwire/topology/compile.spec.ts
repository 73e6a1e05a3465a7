import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { loadSpec } from '../../../../blanket-manager/specfile/load.ts'
import type { Spec } from '../../../../core/spec.ts'
import { tapFor } from '../../../../blanket-manager/planner/placement.ts'
import { endpointBridgeName, MAX_CONNECTOR_ID, type EndpointConfig, type WireSpec } from '../../../../virtualwire/types.ts'
import {
  assertCrossSite, assignConnectorIds, compileTopology, connectWire, createLine, crossSiteCheck, diffEndpoints, disconnectWire,
  formatEndpointAddress, parseEndpointAddress, switchBridgeName, switchPortLinkNames, wireKey, type EndpointWrite
} from '../../../../virtualwire/topology/compile.ts'
import { TopologyError, WireError } from '../../../../virtualwire/topology/errors.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..')
const PREFIX = 'sct1a2b'
const HOSTS = { 'host-a': '198.18.1.10', 'host-b': '198.18.1.11', 'host-c': '198.18.2.10' }
const A = '198.18.1.10:4789'
const B = '198.18.1.11:4789'
const C = '198.18.2.10:4789'

const w = (text: string): WireSpec => {
  const [a, b] = text.split(' -- ')
  const [ac, ap] = (a ?? '').split('.')
  const [bc, bp] = (b ?? '').split('.')
  return { a: { component: ac ?? '', port: ap ?? '' }, b: { component: bc ?? '', port: bp ?? '' } }
}

/** The example topology: web1 (host-a), app1 (host-b) on sw1 (host-a) — sw1.p3 — fw1 (host-b) — db1 (host-c). */
async function example (): Promise<Spec> {
  return await loadSpec(path.join(root, 'examples/virtualwire.yaml'))
}

function explicitPlacement (spec: Spec): Record<string, string> {
  return Object.fromEntries(Object.values(spec.vms).map(v => [v.name, v.host ?? '']))
}

function compile (spec: Spec, placement: Record<string, string>, hostAddress: Record<string, string> = HOSTS, ids?: Record<string, number>): ReturnType<typeof compileTopology> {
  return compileTopology({ spec, placement, hostAddress, ids: ids ?? assignConnectorIds(spec.network.wires, {}), prefix: PREFIX })
}

/**
 * Executes writes the way a host's endpoint interface does: `create` of an existing N, or a
 * re-point / destroy of a missing N, fails (EEXIST / ENOENT). Returns the new state.
 */
function apply (current: Record<string, EndpointConfig[]>, writes: EndpointWrite[]): Record<string, EndpointConfig[]> {
  const hosts = new Map(Object.entries(current).map(([h, list]) => [h, new Map(list.map(e => [e.id, structuredClone(e)]))]))
  for (const wr of writes) {
    const eps = hosts.get(wr.host) ?? new Map<number, EndpointConfig>()
    hosts.set(wr.host, eps)
    if (wr.file === 'create') {
      const [n, local, remote] = wr.line.split(' ')
      const id = Number(n)
      const l = parseEndpointAddress(local ?? '')
      const r = parseEndpointAddress(remote ?? '')
      if (eps.has(id)) throw new Error(`EEXIST: create ${wr.line} on ${wr.host}`)
      if (l === undefined || r === undefined) throw new Error(`EINVAL: ${wr.line}`)
      eps.set(id, { id, local: l, remote: r })
    } else if (wr.file === 'destroy') {
      if (!eps.delete(Number(wr.line))) throw new Error(`ENOENT: destroy ${wr.line} on ${wr.host}`)
    } else {
      const e = eps.get(Number(wr.file))
      const r = parseEndpointAddress(wr.line)
      if (e === undefined) throw new Error(`ENOENT: re-point ${wr.file} on ${wr.host}`)
      if (r === undefined) throw new Error(`EINVAL: ${wr.line}`)
      e.remote = r
    }
  }
  const out: Record<string, EndpointConfig[]> = {}
  for (const [h, eps] of [...hosts].sort(([x], [y]) => x.localeCompare(y))) {
    if (eps.size > 0) out[h] = [...eps.values()].sort((x, y) => x.id - y.id)
  }
  return out
}

/** diff, apply, and check that the result is `wanted` and that diffing again is empty; also after every partial apply. */
function converges (t: Test, current: Record<string, EndpointConfig[]>, wanted: Record<string, EndpointConfig[]>): EndpointWrite[] {
  const writes = diffEndpoints(current, wanted)
  t.strictSame(apply(current, writes), wanted, 'applying the writes gives the wanted endpoints')
  t.strictSame(diffEndpoints(apply(current, writes), wanted), [], 'a second diff is empty')
  for (let k = 0; k < writes.length; k++) {
    const partial = apply(current, writes.slice(0, k))
    t.strictSame(apply(partial, diffEndpoints(partial, wanted)), wanted, `re-run after ${k} of ${writes.length} writes finishes the job`)
  }
  return writes
}

// ---------------------------------------------------------------- IDs

t.test('assignConnectorIds: fresh IDs in wire order, canonical keys', async t => {
  const wires = [w('web1.eth0 -- sw1.p1'), w('app1.eth0 -- sw1.p2'), w('sw1.p3 -- fw1.eth0')]
  const ids = assignConnectorIds(wires, {})
  t.strictSame(ids, { 'sw1.p1 -- web1.eth0': 1, 'app1.eth0 -- sw1.p2': 2, 'fw1.eth0 -- sw1.p3': 3 })
  t.strictSame(Object.keys(ids), wires.map(wireKey), 'keys in wire order')
  t.equal(wireKey(w('sw1.p1 -- web1.eth0')), wireKey(w('web1.eth0 -- sw1.p1')), 'either order, one key')
  t.strictSame(assignConnectorIds([w('sw1.p1 -- web1.eth0')], ids), { 'sw1.p1 -- web1.eth0': 1 }, 'a wire written the other way round keeps its ID')
})

t.test('assignConnectorIds: stable when wires are added and removed', async t => {
  const w1 = w('web1.eth0 -- sw1.p1')
  const w2 = w('app1.eth0 -- sw1.p2')
  const w3 = w('sw1.p3 -- fw1.eth0')
  const w4 = w('fw1.eth1 -- db1.eth0')
  const first = assignConnectorIds([w1, w2, w3], {})
  // Added at the front: existing IDs kept, the new wire gets the lowest free one.
  const second = assignConnectorIds([w4, w1, w2, w3], first)
  t.strictSame(second, { [wireKey(w4)]: 4, [wireKey(w1)]: 1, [wireKey(w2)]: 2, [wireKey(w3)]: 3 })
  // w2 removed and w5 added in the same round: w5 does not take w2's ID while w2's endpoints may still exist.
  const w5 = w('app1.eth0 -- sw1.p9')
  const third = assignConnectorIds([w1, w3, w4, w5], second)
  t.strictSame(third, { [wireKey(w1)]: 1, [wireKey(w3)]: 3, [wireKey(w4)]: 4, [wireKey(w5)]: 5 })
  // Once the stored map no longer holds w2, its ID is the lowest free one again.
  const w6 = w('lone.eth0 -- sw1.p2')
  t.strictSame(assignConnectorIds([w1, w3, w4, w5, w6], third)[wireKey(w6)], 2)
  // Removing wires never renumbers the others.
  t.strictSame(assignConnectorIds([w4], third), { [wireKey(w4)]: 4 })
})

t.test('assignConnectorIds: bad or clashing stored IDs are replaced', async t => {
  const w1 = w('a.eth0 -- s.p1')
  const w2 = w('b.eth0 -- s.p2')
  t.strictSame(assignConnectorIds([w1, w2], { [wireKey(w1)]: 7, [wireKey(w2)]: 7 }), { [wireKey(w1)]: 7, [wireKey(w2)]: 1 }, 'a duplicate ID: the first wire keeps it')
  t.strictSame(assignConnectorIds([w1], { [wireKey(w1)]: 0 }), { [wireKey(w1)]: 1 }, '0 is reserved')
  t.strictSame(assignConnectorIds([w1], { [wireKey(w1)]: MAX_CONNECTOR_ID + 1 }), { [wireKey(w1)]: 1 }, 'above 24 bits')
  t.strictSame(assignConnectorIds([w1], { [wireKey(w1)]: MAX_CONNECTOR_ID }), { [wireKey(w1)]: MAX_CONNECTOR_ID }, 'the largest VNI is fine')
  t.strictSame(assignConnectorIds([w1, w1], {}), { [wireKey(w1)]: 1 }, 'a repeated wire gets one ID')
})

// ---------------------------------------------------------------- compile

t.test('compileTopology: the example topology', async t => {
  const spec = await example()
  const topo = compile(spec, explicitPlacement(spec))
  // IDs: 1 web1-sw1, 2 app1-sw1, 3 sw1-fw1, 4 fw1-db1.
  t.strictSame(topo.connectors.map(c => [c.id, c.key, c.a.host, c.b.host, c.collapsed]), [
    [1, 'sw1.p1 -- web1.eth0', 'host-a', 'host-a', true],
    [2, 'app1.eth0 -- sw1.p2', 'host-b', 'host-a', false],
    [3, 'fw1.eth0 -- sw1.p3', 'host-b', 'host-a', false],
    [4, 'db1.eth0 -- fw1.eth1', 'host-c', 'host-b', false]
  ])
  const c1 = topo.connectors[0]
  t.strictSame(c1?.a.attach, { kind: 'switch-port', switch: 'sw1', port: 'p1', switchBridge: switchBridgeName(PREFIX, 'sw1'), link: `${PREFIX}p1a`, peer: `${PREFIX}q1a` })
  t.strictSame(c1?.b.attach, { kind: 'nic', vm: 'web1', nic: 'eth0', tap: tapFor(PREFIX, 'web1', 'eth0') })
  t.equal(c1?.bridge, endpointBridgeName(PREFIX, 1))
  t.strictSame(c1?.a.address, { ip: '198.18.1.10', port: 4789 })
  t.strictSame(topo.endpoints, {
    'host-a': [
      { id: 1, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } },
      { id: 2, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.11', port: 4789 } },
      { id: 3, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.11', port: 4789 } }
    ],
    'host-b': [
      { id: 2, local: { ip: '198.18.1.11', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } },
      { id: 3, local: { ip: '198.18.1.11', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } },
      { id: 4, local: { ip: '198.18.1.11', port: 4789 }, remote: { ip: '198.18.2.10', port: 4789 } }
    ],
    'host-c': [
      { id: 4, local: { ip: '198.18.2.10', port: 4789 }, remote: { ip: '198.18.1.11', port: 4789 } }
    ]
  })
  t.strictSame(topo.switches, {
    'host-a': [{
      name: 'sw1',
      bridge: switchBridgeName(PREFIX, 'sw1'),
      ports: [
        { port: 'p1', connectorId: 1, endpointBridge: endpointBridgeName(PREFIX, 1), link: `${PREFIX}p1a`, peer: `${PREFIX}q1a` },
        { port: 'p2', connectorId: 2, endpointBridge: endpointBridgeName(PREFIX, 2), link: `${PREFIX}p2b`, peer: `${PREFIX}q2b` },
        { port: 'p3', connectorId: 3, endpointBridge: endpointBridgeName(PREFIX, 3), link: `${PREFIX}p3b`, peer: `${PREFIX}q3b` }
      ]
    }]
  })
  t.strictSame(topo.nics, {
    app1: { eth0: { connectorId: 2, bridge: endpointBridgeName(PREFIX, 2) } },
    db1: { eth0: { connectorId: 4, bridge: endpointBridgeName(PREFIX, 4) } },
    fw1: { eth0: { connectorId: 3, bridge: endpointBridgeName(PREFIX, 3) }, eth1: { connectorId: 4, bridge: endpointBridgeName(PREFIX, 4) } },
    web1: { eth0: { connectorId: 1, bridge: endpointBridgeName(PREFIX, 1) } }
  })
  // From nothing: creates only, one per endpoint.
  const writes = converges(t, {}, topo.endpoints)
  t.strictSame(writes, [
    { host: 'host-a', file: 'create', line: `1 ${A} ${A}` },
    { host: 'host-a', file: 'create', line: `2 ${A} ${B}` },
    { host: 'host-a', file: 'create', line: `3 ${A} ${B}` },
    { host: 'host-b', file: 'create', line: `2 ${B} ${A}` },
    { host: 'host-b', file: 'create', line: `3 ${B} ${A}` },
    { host: 'host-b', file: 'create', line: `4 ${B} ${C}` },
    { host: 'host-c', file: 'create', line: `4 ${C} ${B}` }
  ])
  // And back to nothing: destroys only.
  t.strictSame(converges(t, topo.endpoints, {}).map(x => `${x.host} ${x.file} ${x.line}`),
    ['host-a destroy 1', 'host-a destroy 2', 'host-a destroy 3', 'host-b destroy 2', 'host-b destroy 3', 'host-b destroy 4', 'host-c destroy 4'])
})

t.test('compileTopology: names fit Linux interface names; a VM-less switch is still planned', async t => {
  const spec = await example()
  spec.network.switches.sw2 = { name: 'sw2', host: 'host-c' }
  const topo = compile(spec, explicitPlacement(spec))
  t.strictSame(topo.switches['host-c'], [{ name: 'sw2', bridge: switchBridgeName(PREFIX, 'sw2'), ports: [] }])
  t.not(switchBridgeName(PREFIX, 'sw1'), switchBridgeName(PREFIX, 'sw2'))
  t.equal(switchBridgeName(PREFIX, 'sw1'), switchBridgeName(PREFIX, 'sw1'), 'deterministic')
  const big = switchPortLinkNames('sc1234', MAX_CONNECTOR_ID, 'b')
  t.strictSame(big, { link: 'sc1234pffffffb', peer: 'sc1234qffffffb' })
  for (const name of [switchBridgeName('sct1a2b', 'a-very-long-switch-name'), big.link, switchPortLinkNames('sct1a2b', MAX_CONNECTOR_ID, 'a').peer]) {
    t.ok(name.length <= 15, `${name} fits IFNAMSIZ`)
  }
})

t.test('compileTopology: port from the spec; switch-to-switch wire on one host has one veth pair per end', async t => {
  const spec = await example()
  spec.network.port = 8472
  spec.network.switches.sw2 = { name: 'sw2', host: 'host-a' }
  spec.network.wires.push(w('sw1.p9 -- sw2.p1'))
  const topo = compile(spec, explicitPlacement(spec))
  const c = topo.connectors.find(x => x.key === 'sw1.p9 -- sw2.p1')
  t.equal(c?.id, 5)
  t.equal(c?.collapsed, true)
  t.match(c?.a.attach, { kind: 'switch-port', switch: 'sw1', link: `${PREFIX}p5a` })
  t.match(c?.b.attach, { kind: 'switch-port', switch: 'sw2', link: `${PREFIX}p5b` })
  t.strictSame(topo.endpoints['host-a']?.find(e => e.id === 5), { id: 5, local: { ip: '198.18.1.10', port: 8472 }, remote: { ip: '198.18.1.10', port: 8472 } })
  t.equal(createLine({ id: 5, local: { ip: '198.18.1.10', port: 8472 }, remote: { ip: '198.18.1.10', port: 8472 } }), '5 198.18.1.10:8472 198.18.1.10:8472')
})

t.test('compileTopology: inconsistent inputs are TopologyErrors', async t => {
  const spec = await example()
  const placement = explicitPlacement(spec)
  t.throws(() => compile(spec, placement, HOSTS, {}), { code: 'SC_TOPOLOGY', message: 'wire sw1.p1 -- web1.eth0 has no connector ID' })
  const ids = assignConnectorIds(spec.network.wires, {})
  t.throws(() => compile(spec, placement, HOSTS, { ...ids, 'app1.eth0 -- sw1.p2': 1 }), { code: 'SC_TOPOLOGY', message: /connector ID 1 is given to both/ })
  const { db1: _db1, ...unplaced } = placement
  t.throws(() => compile(spec, unplaced), new TopologyError('vm db1 (of wire db1.eth0 -- fw1.eth1) is not placed on a host'))
  t.throws(() => compile(spec, placement, { 'host-a': '198.18.1.10', 'host-b': '198.18.1.11' }), { code: 'SC_TOPOLOGY', message: /host host-c \(of vm db1\) has no underlay address/ })
  t.throws(() => compile(spec, placement, { ...HOSTS, 'host-a': 'nope' }), { code: 'SC_TOPOLOGY', message: /host host-a \(of switch sw1\) has no valid underlay address/ })
  spec.network.wires.push(w('web1.eth0 -- sw1.p7'))
  t.throws(() => compile(spec, placement), { code: 'SC_TOPOLOGY', message: /network\.wires\[4\]: web1\.eth0 is already wired/ })
})

// ---------------------------------------------------------------- collapse, expand, migrate

t.test('collapse and re-expand when one side moves host', async t => {
  const spec = await example()
  const placement = explicitPlacement(spec)
  const ids = assignConnectorIds(spec.network.wires, {})
  const before = compile(spec, placement, HOSTS, ids)
  t.strictSame(before.endpoints['host-a']?.[0], { id: 1, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } }, 'web1 and sw1 on host-a: collapsed')

  // web1 moves to host-b: connector 1 expands (host-a's endpoint re-pointed, a new endpoint on host-b).
  const moved = compile(spec, { ...placement, web1: 'host-b' }, HOSTS, ids)
  t.equal(moved.connectors[0]?.collapsed, false)
  const expand = converges(t, before.endpoints, moved.endpoints)
  t.strictSame(expand, [
    { host: 'host-b', file: 'create', line: `1 ${B} ${A}` },
    { host: 'host-a', file: '1', line: B }
  ])

  // And back: connector 1 collapses again (re-point to itself), host-b's endpoint goes.
  const collapse = converges(t, moved.endpoints, before.endpoints)
  t.strictSame(collapse, [
    { host: 'host-a', file: '1', line: A },
    { host: 'host-b', file: 'destroy', line: '1' }
  ])

  // app1 moves onto sw1's host: connector 2 collapses on host-a.
  const together = compile(spec, { ...placement, app1: 'host-a' }, HOSTS, ids)
  t.strictSame(converges(t, before.endpoints, together.endpoints), [
    { host: 'host-a', file: '2', line: A },
    { host: 'host-b', file: 'destroy', line: '2' }
  ])
})

t.test('migrating a VM: create at the destination, re-point the sisters, destroy the originals', async t => {
  const spec = await example()
  const placement = explicitPlacement(spec)
  const ids = assignConnectorIds(spec.network.wires, {})
  const before = compile(spec, placement, HOSTS, ids)
  // fw1 (connectors 3 to sw1 on host-a and 4 to db1 on host-c) moves host-b -> host-a.
  const after = compile(spec, { ...placement, fw1: 'host-a' }, HOSTS, ids)
  t.strictSame(after.connectors.find(c => c.id === 3)?.collapsed, true, 'fw1.eth0 -- sw1.p3 collapses on host-a')
  const writes = converges(t, before.endpoints, after.endpoints)
  t.strictSame(writes, [
    { host: 'host-a', file: 'create', line: `4 ${A} ${C}` },
    { host: 'host-a', file: '3', line: A },
    { host: 'host-c', file: '4', line: A },
    { host: 'host-b', file: 'destroy', line: '3' },
    { host: 'host-b', file: 'destroy', line: '4' }
  ])
  // db1 migrates across sites: host-c -> host-b; only its own connector changes.
  const db = compile(spec, { ...placement, db1: 'host-b' }, HOSTS, ids)
  t.strictSame(converges(t, before.endpoints, db.endpoints), [
    { host: 'host-b', file: '4', line: B },
    { host: 'host-c', file: 'destroy', line: '4' }
  ], 'db1 lands next to fw1: connector 4 collapses on host-b')
})

t.test('diffEndpoints: minimal, ordered, and safe to re-run', async t => {
  const spec = await example()
  const placement = explicitPlacement(spec)
  const ids = assignConnectorIds(spec.network.wires, {})
  const topo = compile(spec, placement, HOSTS, ids)
  t.strictSame(diffEndpoints(topo.endpoints, topo.endpoints), [], 'nothing changed: no writes')
  t.strictSame(diffEndpoints(topo.endpoints, structuredClone(topo.endpoints)), [], 'equal by value')
  t.strictSame(diffEndpoints({}, {}), [])
  t.strictSame(diffEndpoints({ 'host-x': [] }, {}), [], 'a host with no endpoints needs nothing')
  const shuffled = Object.fromEntries(Object.entries(topo.endpoints).map(([h, l]) => [h, [...l].reverse()]))
  t.strictSame(diffEndpoints(shuffled, topo.endpoints), [], 'order of the current list does not matter')

  // host-b comes back with a new address: its endpoints are replaced (destroy right before create), sisters re-pointed.
  const readdressed = compile(spec, placement, { ...HOSTS, 'host-b': '198.18.1.21' }, ids)
  const B2 = '198.18.1.21:4789'
  t.strictSame(converges(t, topo.endpoints, readdressed.endpoints), [
    { host: 'host-b', file: 'destroy', line: '2' },
    { host: 'host-b', file: 'create', line: `2 ${B2} ${A}` },
    { host: 'host-b', file: 'destroy', line: '3' },
    { host: 'host-b', file: 'create', line: `3 ${B2} ${A}` },
    { host: 'host-b', file: 'destroy', line: '4' },
    { host: 'host-b', file: 'create', line: `4 ${B2} ${C}` },
    { host: 'host-a', file: '2', line: B2 },
    { host: 'host-a', file: '3', line: B2 },
    { host: 'host-c', file: '4', line: B2 }
  ])

  // A new port is a new local address everywhere.
  spec.network.port = 4790
  const ported = compile(spec, placement, HOSTS, ids)
  const pw = converges(t, topo.endpoints, ported.endpoints)
  t.equal(pw.filter(x => x.file === 'create').length, 7)
  t.equal(pw.filter(x => x.file === 'destroy').length, 7)
  t.equal(pw.filter(x => x.file !== 'create' && x.file !== 'destroy').length, 0, 'replaced endpoints need no re-point')
  spec.network.port = 4789

  // A wire removed and one added: destroys for the old connector after the creates for the new.
  const wires = [...spec.network.wires.filter(x => wireKey(x) !== 'app1.eth0 -- sw1.p2'), w('app1.eth0 -- sw1.p4')]
  const ids2 = assignConnectorIds(wires, ids)
  t.equal(ids2['app1.eth0 -- sw1.p4'], 5)
  const rewired = compileTopology({ spec: { ...spec, network: { ...spec.network, wires } }, placement, hostAddress: HOSTS, ids: ids2, prefix: PREFIX })
  t.strictSame(converges(t, topo.endpoints, rewired.endpoints), [
    { host: 'host-a', file: 'create', line: `5 ${A} ${B}` },
    { host: 'host-b', file: 'create', line: `5 ${B} ${A}` },
    { host: 'host-a', file: 'destroy', line: '2' },
    { host: 'host-b', file: 'destroy', line: '2' }
  ])
})

// ---------------------------------------------------------------- checks and wire edits

t.test('crossSiteCheck after placement', async t => {
  const spec = await example()
  delete spec.vms.app1?.host
  const placement = { ...explicitPlacement(spec), app1: 'host-c' }
  t.strictSame(crossSiteCheck(spec, placement), [], 'both sites have extenders')
  spec.network.extenders = { 'cloud-a': { site: 'cloud-a', gateway: 'host-b' } }
  t.strictSame(crossSiteCheck(spec, placement), [
    { index: 1, message: 'app1.eth0 (site cloud-b) -- sw1.p2 (site cloud-a) crosses sites but site cloud-b has no extender', field: 'network.wires[1]' },
    { index: 3, message: 'fw1.eth1 (site cloud-a) -- db1.eth0 (site cloud-b) crosses sites but site cloud-b has no extender', field: 'network.wires[3]' }
  ])
  t.throws(() => assertCrossSite(spec, placement), { code: 'SC_WIRE_INVALID', message: /^network\.wires\[1\]: app1\.eth0 \(site cloud-b\)/ })
  t.doesNotThrow(() => assertCrossSite(spec, { ...placement, app1: 'host-a', db1: 'host-b' }))
})

t.test('connectWire / disconnectWire', async t => {
  const spec = await example()
  const wires = spec.network.wires
  spec.vms.web1?.nics.push({ name: 'eth1', address: '198.19.30.11/24' })
  const added = connectWire(spec, wires, 'web1.eth1', 'sw1.p4')
  t.equal(added.length, wires.length + 1)
  t.strictSame(added.at(-1), w('web1.eth1 -- sw1.p4'))
  t.equal(wires.length, 4, 'the input list is not changed')

  const fails = (a: string, b: string, message: string | RegExp, placement?: Record<string, string>): void => {
    try {
      connectWire(spec, wires, a, b, placement)
      t.fail(`${a} -- ${b} should be rejected`)
    } catch (err) {
      t.type(err, WireError)
      t.equal((err as WireError).code, 'SC_WIRE_INVALID')
      t.match((err as WireError).problems, [message], `${a} -- ${b}`)
      t.equal((err as WireError).problems.length, 1)
    }
  }
  fails('web1', 'sw1.p4', "malformed wire 'web1 -- sw1.p4': 'web1' needs a port: write <component>.<port>, e.g. 'web1.eth0'")
  fails('web1.eth1', 'sw1.P4', /malformed wire .*'sw1\.P4' is not <component>\.<port>/)
  fails('wbe1.eth1', 'sw1.p4', "unknown component 'wbe1' (did you mean 'web1'?)")
  fails('web1.eth7', 'sw1.p4', "vm 'web1' has no nic 'eth7'; its nics: eth0, eth1")
  fails('web1.eth0', 'sw1.p4', 'web1.eth0 is already wired by network.wires[0] (web1.eth0 -- sw1.p1)')
  fails('web1.eth1', 'sw1.p1', 'sw1.p1 is already wired by network.wires[0] (web1.eth0 -- sw1.p1)')
  fails('sw1.p5', 'sw1.p6', "sw1.p5 -- sw1.p6 wires 'sw1' to itself")
  fails('web1.eth1', 'sw1.p-4', /switch port 'p-4' of 'sw1' must be/)
  spec.network.extenders = {}
  fails('web1.eth1', 'db1.eth1x', "vm 'db1' has no nic 'eth1x'; its nics: eth0")
  spec.vms.db1?.nics.push({ name: 'eth1', address: '198.19.30.21/24' })
  fails('web1.eth1', 'db1.eth1', 'web1.eth1 (site cloud-a) -- db1.eth1 (site cloud-b) crosses sites but sites cloud-a and cloud-b have no extender')
  t.doesNotThrow(() => connectWire(spec, wires, 'web1.eth1', 'db1.eth1', { ...explicitPlacement(spec), db1: 'host-a' }), 'placement decides the sites')

  t.strictSame(disconnectWire(wires, 'sw1.p1', 'web1.eth0'), wires.slice(1), 'either order')
  t.strictSame(disconnectWire(wires, 'fw1.eth1', 'db1.eth0'), wires.slice(0, 3))
  t.throws(() => disconnectWire(wires, 'web1.eth0', 'sw1.p2'), { code: 'SC_WIRE_INVALID', message: 'there is no wire web1.eth0 -- sw1.p2; web1.eth0 is wired as web1.eth0 -- sw1.p1; sw1.p2 is wired as app1.eth0 -- sw1.p2' })
  t.throws(() => disconnectWire(wires, 'x.eth0', 'y.eth0'), { message: 'there is no wire x.eth0 -- y.eth0' })
  t.throws(() => disconnectWire(wires, 'x', 'y.eth0'), { message: /malformed wire/ })
})

t.test('endpoint addresses', async t => {
  t.strictSame(parseEndpointAddress('198.18.1.10'), { ip: '198.18.1.10', port: 4789 }, 'port defaults to 4789')
  t.strictSame(parseEndpointAddress('198.18.1.10:8472'), { ip: '198.18.1.10', port: 8472 })
  t.strictSame(parseEndpointAddress('198.18.1.10', 5000), { ip: '198.18.1.10', port: 5000 })
  for (const bad of ['', '198.18.1', '198.18.1.10:0', '198.18.1.10:65536', 'host:80', '198.18.1.10:', '198.18.1.300:1']) {
    t.equal(parseEndpointAddress(bad), undefined, `'${bad}'`)
  }
  t.equal(formatEndpointAddress({ ip: '198.18.1.10', port: 4789 }), '198.18.1.10:4789')
})
