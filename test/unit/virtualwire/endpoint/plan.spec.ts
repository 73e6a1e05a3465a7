import t from 'tap'
import { endpointLinkOf, planEndpoint, planReconcile, describeStep, type ObservedLink, type KernelStep } from '../../../../virtualwire/endpoint/plan.ts'
import { parseObservedLinks, stepCommands } from '../../../../virtualwire/endpoint/kernel.ts'
import { parseState, EndpointStateError } from '../../../../virtualwire/endpoint/manager.ts'
import { pidFileFor, endpointDaemonArgv } from '../../../../virtualwire/endpoint/daemon.ts'
import type { EndpointConfig } from '../../../../virtualwire/types.ts'

const P = 'sc12'
const encap: EndpointConfig = { id: 7, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.2.10', port: 4789 } }
const collapsed: EndpointConfig = { ...encap, remote: { ...encap.local } }

const goodBridge = (name = 'sc12b7'): ObservedLink => ({
  name, kind: 'bridge', mtu: 1450, up: true,
  bridge: { vlanFiltering: false, mcastSnooping: false, stp: false, groupFwdMask: 0xfff8, nfCall: false }
})
const goodVxlan = (dsts = ['198.18.2.10']): ObservedLink => ({
  name: 'sc12x7', kind: 'vxlan', mtu: 1450, up: true, master: 'sc12b7',
  vxlan: { id: 7, local: '198.18.1.10', port: 4789, learning: false }, defaultDsts: dsts
})
const map = (...ls: ObservedLink[]): Map<string, ObservedLink> => new Map(ls.map(l => [l.name, l]))
const ops = (s: KernelStep[]): string[] => s.map(x => x.op === 'delLink' ? `del ${x.name}` : x.op)

t.test('create on an empty host: bridge, then VXLAN device enslaved with its default destination', async t => {
  t.same(planEndpoint(7, encap, map(), P, 1450), [
    { op: 'addBridge', name: 'sc12b7', mtu: 1450 },
    { op: 'up', name: 'sc12b7' },
    { op: 'addVxlan', name: 'sc12x7', id: 7, local: '198.18.1.10', port: 4789, mtu: 1450 },
    { op: 'enslave', name: 'sc12x7', bridge: 'sc12b7' },
    { op: 'addDefaultDst', name: 'sc12x7', ip: '198.18.2.10' },
    { op: 'up', name: 'sc12x7' }
  ])
})

t.test('collapsed: only the bridge', async t => {
  t.same(ops(planEndpoint(7, collapsed, map(), P, 1450)), ['addBridge', 'up'])
})

t.test('already right: nothing to do', async t => {
  t.same(planEndpoint(7, encap, map(goodBridge(), goodVxlan()), P, 1450), [])
  t.same(planEndpoint(7, collapsed, map(goodBridge()), P, 1450), [])
})

t.test('re-point: add the new destination before removing the old one', async t => {
  t.same(planEndpoint(7, { ...encap, remote: { ip: '198.18.3.10', port: 4789 } }, map(goodBridge(), goodVxlan()), P, 1450), [
    { op: 'addDefaultDst', name: 'sc12x7', ip: '198.18.3.10' },
    { op: 'delDefaultDst', name: 'sc12x7', ip: '198.18.2.10' }
  ])
  t.same(planEndpoint(7, encap, map(goodBridge(), goodVxlan(['198.18.2.10', '198.18.9.9'])), P, 1450), [
    { op: 'delDefaultDst', name: 'sc12x7', ip: '198.18.9.9' }
  ], 'extra destinations removed')
  t.same(planEndpoint(7, encap, map(goodBridge(), goodVxlan([])), P, 1450), [
    { op: 'addDefaultDst', name: 'sc12x7', ip: '198.18.2.10' }
  ], 'missing destination added')
})

t.test('collapse removes the VXLAN device, expand recreates it', async t => {
  t.same(planEndpoint(7, collapsed, map(goodBridge(), goodVxlan()), P, 1450), [{ op: 'delLink', name: 'sc12x7' }])
  t.same(ops(planEndpoint(7, encap, map(goodBridge()), P, 1450)), ['addVxlan', 'enslave', 'addDefaultDst', 'up'])
})

t.test('destroy removes both, VXLAN first', async t => {
  t.same(ops(planEndpoint(7, undefined, map(goodBridge(), goodVxlan()), P, 1450)), ['del sc12x7', 'del sc12b7'])
  t.same(planEndpoint(7, undefined, map(), P, 1450), [])
})

t.test('drift is repaired', async t => {
  const wrongVni = { ...goodVxlan(), vxlan: { id: 8, local: '198.18.1.10', port: 4789, learning: false } }
  t.same(ops(planEndpoint(7, encap, map(goodBridge(), wrongVni), P, 1450)), ['del sc12x7', 'addVxlan', 'enslave', 'addDefaultDst', 'up'], 'wrong VNI: recreated')
  const learning = { ...goodVxlan(), vxlan: { id: 7, local: '198.18.1.10', port: 4789, learning: true } }
  t.same(ops(planEndpoint(7, encap, map(goodBridge(), learning), P, 1450)), ['del sc12x7', 'addVxlan', 'enslave', 'addDefaultDst', 'up'], 'learning: recreated')
  const otherLocal = { ...goodVxlan(), vxlan: { id: 7, local: '198.18.1.11', port: 4789, learning: false } }
  t.same(ops(planEndpoint(7, encap, map(goodBridge(), otherLocal), P, 1450))[0], 'del sc12x7', 'other local address: recreated')
  const loose = { ...goodVxlan(), master: undefined, up: false, mtu: 1500 }
  t.same(ops(planEndpoint(7, encap, map(goodBridge(), loose), P, 1450)), ['setMtu', 'enslave', 'up'], 'detached, down, wrong MTU')
  const b = goodBridge()
  t.same(planEndpoint(7, encap, map({ ...b, bridge: { ...b.bridge!, vlanFiltering: true } }, goodVxlan()), P, 1450),
    [{ op: 'tuneBridge', name: 'sc12b7', vlanFilteringOff: true }], 'vlan filtering turned off')
  t.same(ops(planEndpoint(7, encap, map({ ...b, bridge: { ...b.bridge!, mcastSnooping: true }, mtu: 1500, up: false }, goodVxlan()), P, 1450)),
    ['tuneBridge', 'setMtu', 'up'])
  t.same(ops(planEndpoint(7, collapsed, map({ ...b, kind: 'veth', bridge: undefined }), P, 1450)), ['del sc12b7', 'addBridge', 'up'], 'a non-bridge under our name is replaced')
  t.same(ops(planEndpoint(7, encap, map(goodBridge(), goodVxlan()), P, 1400)), ['setMtu', 'setMtu'], 'MTU change')
})

t.test('endpointLinkOf recognises only our names and kinds', async t => {
  t.same(endpointLinkOf('sc12b7', 'bridge', P), { id: 7, role: 'bridge' })
  t.same(endpointLinkOf('sc12xffffff', 'vxlan', P), { id: 0xffffff, role: 'vxlan' })
  t.equal(endpointLinkOf('sc12b7', 'vxlan', P), undefined, 'wrong kind')
  t.equal(endpointLinkOf('sc12br0', 'bridge', P), undefined, 'guest bridge')
  t.equal(endpointLinkOf('sc12t1a2b3c', 'tun', P), undefined, 'TAP')
  t.equal(endpointLinkOf('sc12b07', 'bridge', P), undefined, 'non-canonical')
  t.equal(endpointLinkOf('sc12b0', 'bridge', P), undefined, 'ID 0')
  t.equal(endpointLinkOf('sc13b7', 'bridge', P), undefined, 'other prefix')
})

t.test('reconcile: stale devices go (VXLAN first), configured endpoints come back', async t => {
  const observed: ObservedLink[] = [
    goodBridge('sc12b3'), { ...goodVxlan(), name: 'sc12x3' },
    goodBridge(), // 7's bridge is there, its VXLAN device was deleted
    { name: 'sc12br0', kind: 'bridge', mtu: 1500, up: true }, // not ours to touch
    { name: 'sc12t00aa', kind: 'tun', mtu: 1450, up: true, master: 'sc12b7' }
  ]
  const steps = planReconcile([encap, { ...collapsed, id: 9 }], observed, P, 1450)
  t.same(steps.map(describeStep), [
    'delete sc12x3',
    'delete sc12b3',
    'add vxlan sc12x7 id 7 local 198.18.1.10 dstport 4789 mtu 1450',
    'enslave sc12x7 to sc12b7',
    'send sc12x7 default traffic to 198.18.2.10',
    'set sc12x7 up',
    'add bridge sc12b9 mtu 1450',
    'set sc12b9 up'
  ])
  t.same(planReconcile([], [goodBridge('sc12br0')], P, 1450), [], 'nothing of ours')
})

t.test('iproute2 commands of each step', async t => {
  t.same(stepCommands({ op: 'addVxlan', name: 'sc12x7', id: 7, local: '198.18.1.10', port: 4789, mtu: 1450 }),
    [['ip', 'link', 'add', 'sc12x7', 'mtu', '1450', 'type', 'vxlan', 'id', '7', 'local', '198.18.1.10', 'dstport', '4789', 'nolearning']])
  t.same(stepCommands({ op: 'addDefaultDst', name: 'sc12x7', ip: '198.18.2.10' }), [['bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'sc12x7', 'dst', '198.18.2.10']])
  t.same(stepCommands({ op: 'delDefaultDst', name: 'sc12x7', ip: '198.18.2.10' }), [['bridge', 'fdb', 'del', '00:00:00:00:00:00', 'dev', 'sc12x7', 'dst', '198.18.2.10']])
  const br = stepCommands({ op: 'addBridge', name: 'sc12b7', mtu: 1450 })[0] ?? []
  t.match(br.join(' '), /^ip link add sc12b7 mtu 1450 type bridge .*mcast_snooping 0 .*group_fwd_mask 0xfff8/)
  t.notMatch(br.join(' '), /vlan_filtering/, 'not passed at creation (default 0; some kernels refuse the option)')
  t.equal(stepCommands({ op: 'tuneBridge', name: 'sc12b7', vlanFilteringOff: true }).length, 2)
  t.same(stepCommands({ op: 'delLink', name: 'sc12b7' }), [['ip', 'link', 'del', 'sc12b7']])
})

t.test('parses ip/bridge JSON', async t => {
  const links = JSON.stringify([
    { ifname: 'lo', mtu: 65536, flags: ['LOOPBACK', 'UP'] },
    { ifname: 'sc12b7', mtu: 1450, flags: ['BROADCAST', 'UP'], linkinfo: { info_kind: 'bridge', info_data: { stp_state: 0, vlan_filtering: 0, group_fwd_mask: '0xfff8', mcast_snooping: 0, nf_call_iptables: 0, nf_call_ip6tables: 0, nf_call_arptables: 0 } } },
    { ifname: 'sc12x7', mtu: 1450, flags: ['BROADCAST'], master: 'sc12b7', linkinfo: { info_kind: 'vxlan', info_data: { id: 7, local: '198.18.1.10', port: 4789, learning: false } } }
  ])
  const fdb = JSON.stringify([
    { mac: '00:00:00:00:00:00', ifname: 'sc12x7', dst: '198.18.2.10', flags: ['self'] },
    { mac: '0a:00:00:00:00:01', ifname: 'sc12x7', dst: '198.18.5.5' },
    { mac: '00:00:00:00:00:00', ifname: 'other', dst: '1.1.1.1' }
  ])
  t.same(parseObservedLinks(links, fdb, P), [
    { ...goodBridge(), mtu: 1450 },
    { ...goodVxlan(), up: false }
  ])
})

t.test('state file', async t => {
  const st = parseState(JSON.stringify({ version: 1, prefix: 'sc12', mtu: 1400, endpoints: [encap] }), 's.json')
  t.same(st, { version: 1, prefix: 'sc12', mtu: 1400, endpoints: [encap] })
  t.throws(() => parseState('{', 's.json'), EndpointStateError)
  t.throws(() => parseState('{"version":2,"prefix":"a","endpoints":[]}', 's.json'), EndpointStateError)
  t.throws(() => parseState(JSON.stringify({ version: 1, prefix: 'sc12', endpoints: [{ ...encap, id: 0 }] }), 's.json'), /bad endpoint/)
  t.equal(pidFileFor('/var/lib/sc/vw-endpoints.json'), '/var/lib/sc/vw-endpoints.pid')
  t.same(endpointDaemonArgv({ script: '/x/daemon.mjs', root: '/r', statePath: '/s.json', prefix: 'sc12', node: 'node', tsx: false, mtu: 1400 }),
    ['node', '/x/daemon.mjs', '--root', '/r', '--state', '/s.json', '--prefix', 'sc12', '--mtu', '1400'])
})
