/**
 * The agent protocol's schemas: for every method a good request passes and a bad field is
 * refused with SC_AGENT_BAD_REQUEST naming the method and the field; names the agent builds
 * paths or devices from are refused when they hold '/', '..', spaces or are too long; results
 * and pushes the client relies on are checked.
 */
import t from 'tap'
import { SupercloudError } from '../../../core/errors.ts'
import type { AgentMethod, VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import { AGENT_SCHEMAS, parseAgentMessage, parseParams, parseRequestLine, parseResult, type AgentParams } from '../../../blanket-manager/agent/schema.ts'
import type { SectorTableJson } from '../../../overdriver/coopswap/sector-table.ts'

const MiB = 1024 * 1024
const launch: VmLaunch = {
  name: 'web1',
  cpus: 1,
  memory: { requestedBytes: 256 * MiB, allocatedBytes: 128 * MiB },
  image: { kind: 'kernel', kernel: '/var/lib/sc/images/tiny/vmlinuz', initrd: '/var/lib/sc/images/tiny/initrd.img', readyMarker: 'SUPERCLOUD-GUEST-READY' },
  disks: [{ name: 'data', sizeBytes: 64 * MiB }],
  nics: [{ name: 'eth0', mac: '52:54:00:12:34:56', tap: 'sct1ab2t0a1b2c', address: '198.18.0.10/24', bridge: 'sct1ab2-br', mtu: 1450 }],
  firewall: { between: ['eth0', 'eth1'], rules: [{ action: 'drop', match: 'arp' }], default: 'allow' },
  swap: { sizeBytes: 64 * MiB, repositories: [{ address: { host: '198.18.0.2', port: 7709 }, capability: '00112233445566778899aabbccddeeff', tls: { identity: 'repository-0a1b2c3d4e5f', key: 'ab'.repeat(32) } }] },
  bootTimeoutMs: 60000
}
const table: SectorTableJson = { version: 2, pageSize: 4096, repositories: [{ address: '198.18.0.2:7709', capability: '00112233445566778899aabbccddeeff' }], entries: [[0, 0, 1, 0], [8, 0, 2, 4096]], sums: Buffer.alloc(16, 1).toString('base64') }
const policy = { intervalMs: 1000, overloadOpsPerSec: 200, window: { size: 12, sustained: 8 }, initialThresholdMs: 120000, adaptive: { enabled: true, baseCount: 10 }, quietIntervals: 3 }
const id = '0123456789abcdef'

/** A good request for every method (a method missing here does not typecheck). */
const GOOD: { [M in AgentMethod]: AgentParams<M> } = {
  'agent.hello': {},
  'host.watch': { host: 'aws1' },
  'host.probe': { kernel: '/k/vmlinuz', initrd: '/k/initrd', timeoutMs: 20000, want: 'auto' },
  'vm.create': launch,
  'vm.destroy': { name: 'web1', nics: [{ tap: 'sct1ab2t0a1b2c' }], keep: id },
  'vm.status': { name: 'web1' },
  'vm.list': {},
  'vm.stats': { name: 'web1' },
  'vm.balloon': { name: 'web1', bytes: 128 * MiB },
  'vm.stop': { name: 'web1', timeoutMs: 0 },
  'vm.update': { launch: { ...launch, plugged: { bootCpus: 1, bootMemoryBytes: 128 * MiB, dimmBytes: [128 * MiB], ports: { 'disk-logs': 0 } } } },
  'vm.console': { name: 'web1' },
  'vm.migrate.incoming': { launch, listenIp: '198.18.0.3', mode: 'auto', tls: { identity: 'h1.0123456789ab', key: 'ab'.repeat(32) }, reuse: id },
  'vm.migrate.outgoing': { name: 'web1', destIp: '198.18.0.3', migrationPort: 49152, nbdPort: 49153, mode: 'precopy', maxDowntimeMs: 100, deadlineMs: 120000, holdAtSwitchover: true, tls: 'off', incremental: { id, nodes: ['drv-disk-data'] } },
  'vm.migrate.continue': { name: 'web1' },
  'vm.migrate.cancel': { name: 'web1' },
  'vm.migrate.finish': { name: 'web1' },
  'vm.migrate.active': { name: 'web1' },
  'vm.migrate.mark': { name: 'web1', id },
  'vm.migrate.dirty': { name: 'web1', id },
  'vm.departed.drop': { name: 'web1' },
  'vw.switches': { prefix: 'sct1ab2', switches: [{ name: 'core', bridge: 'sct1ab2s0core', mtu: 1450, ports: [{ port: 'p0', endpointBridge: 'sct1ab2e0', link: 'sct1ab2p0a', peer: 'sct1ab2p0b' }] }] },
  'vw.attach': { taps: [{ tap: 'sct1ab2t0a1b2c', bridge: 'sct1ab2s0core', mtu: 1450 }] },
  'agent.shutdown': {},
  'overdriver.configure': { host: 'host-a', policy, hosts: [{ name: 'host-b', migrationSpaceBytes: 1024 * MiB }] },
  'overdriver.subscribe': {},
  'overdriver.repository': { host: '198.18.0.2', port: 0, capacityBytes: 128 * MiB },
  'overdriver.issue': { vm: 'web1', maxPages: 1000 },
  'overdriver.stats': {},
  'overdriver.migrated': { name: 'web1', ok: true },
  'overdriver.table.export': { name: 'web1' },
  'overdriver.table.adopt': { name: 'web1', table },
  'overdriver.table.handover': { name: 'web1', ok: false }
}

/** For every method that takes params: a dotted field, the bad value put there. */
const BAD: Partial<Record<AgentMethod, Array<[string, unknown]>>> = {
  'host.watch': [['host', 'aws 1'], ['host', 7]],
  'host.probe': [['want', 'fast'], ['kernel', 'vmlinuz'], ['timeoutMs', -1]],
  'vm.create': [['name', 'Web1'], ['cpus', 0], ['memory.requestedBytes', '1G'], ['image.kind', 'iso'], ['image.kernel', '/a/../../etc/passwd'], ['disks.0.name', '../../etc'], ['nics.0.tap', 'tap/0'], ['nics.0.bridge', 'br 0'], ['nics.0.mac', 'zz:00:00:00:00:00'], ['swap.repositories.0.capability', 'xyz'], ['swap.repositories.0.tls', undefined], ['swap.repositories.0.tls', { identity: 'r1', key: 'ab'.repeat(16) }], ['swap.repositories.0.tls', { identity: 'a:b', key: 'ab'.repeat(32) }], ['firewall.between', ['eth0']], ['bootTimeoutMs', 'soon']],
  'vm.destroy': [['name', '../web1'], ['nics.0.tap', '..'], ['keep', '../../x']],
  'vm.status': [['name', 'web 1']],
  'vm.stats': [['name', 42]],
  'vm.balloon': [['bytes', 'lots']],
  'vm.stop': [['name', '../web1'], ['timeoutMs', -1]],
  'vm.update': [['launch.name', '../web1'], ['launch.plugged.ports', { 'disk-logs': -1 }], ['launch.plugged.dimmBytes.0', 'lots']],
  'vm.console': [['name', '/etc']],
  'vm.migrate.incoming': [['launch.name', '..'], ['listenIp', '198.18.0.3/24'], ['mode', 'xbzrle'], ['reuse', 'zz'], ['tls', { identity: 'h1:x', key: 'ab'.repeat(32) }], ['tls', 'on']],
  'vm.migrate.outgoing': [['name', 'a'.repeat(33)], ['migrationPort', 70000], ['holdAtSwitchover', 'yes'], ['incremental.id', '../id'], ['tls', { identity: 'h1', key: 'AB'.repeat(32) }], ['tls', { identity: 'h1', key: 'ab' }]],
  'vm.migrate.continue': [['name', '']],
  'vm.migrate.cancel': [['name', 'web1/']],
  'vm.migrate.finish': [['name', null]],
  'vm.migrate.active': [['name', 'WEB']],
  'vm.migrate.mark': [['id', 'not-hex!'], ['name', '.']],
  'vm.migrate.dirty': [['id', 7]],
  'vm.departed.drop': [['name', '../../root']],
  'vw.switches': [['prefix', 'a/b'], ['switches.0.bridge', 'a-very-long-bridge-name'], ['switches.0.ports.0.link', 'veth 0'], ['switches.0.ports.0.endpointBridge', '../br']],
  'vw.attach': [['taps.0.tap', 'x'.repeat(16)], ['taps.0.bridge', '..']],
  'overdriver.configure': [['host', 'Host A'], ['policy.intervalMs', 10], ['policy.window.size', 0], ['hosts.0.name', 'b/c']],
  'overdriver.repository': [['capacityBytes', 0], ['host', '127.0.0.1/8']],
  'overdriver.issue': [['vm', '../vm']],
  'overdriver.migrated': [['ok', 1]],
  'overdriver.table.export': [['name', 'web1\n']],
  'overdriver.table.adopt': [['table.version', 3], ['table.entries.1', [8, 0, 2]], ['table.sums', 7]],
  'overdriver.table.handover': [['ok', 'true']]
}

/** A copy of `v` with the dotted `field` set to `bad`. */
function withField (v: unknown, field: string, bad: unknown): unknown {
  const copy: unknown = structuredClone(v)
  const keys = field.split('.')
  let o = copy
  for (const k of keys.slice(0, -1)) o = (o as Record<string, unknown>)[k]
  ;(o as Record<string, unknown>)[keys[keys.length - 1] ?? ''] = bad
  return copy
}

/** The field as messages name it: params.nics[0].tap. */
const shown = (field: string): string => `params.${field}`.replace(/\.(\d+)/g, '[$1]')

function refusal (method: AgentMethod, params: unknown): SupercloudError | undefined {
  try { parseParams(method, params) } catch (err) { if (err instanceof SupercloudError) return err; throw err }
  return undefined
}

const methods = Object.keys(AGENT_SCHEMAS) as AgentMethod[]

t.test('every method: a good request passes', async t => {
  t.equal(methods.length, 33, 'thirty-three methods')
  for (const m of methods) t.same(parseParams(m, GOOD[m]), GOOD[m], `${m}: accepted as sent`)
})

t.test('every method with params: a bad field is refused with its name', async t => {
  const noParams = methods.filter(m => Object.keys(GOOD[m]).length === 0)
  t.same(methods.filter(m => BAD[m] === undefined).sort(), noParams.sort(), 'every method with params has bad cases')
  for (const [m, cases] of Object.entries(BAD) as Array<[AgentMethod, Array<[string, unknown]>]>) {
    for (const [field, bad] of cases) {
      const err = refusal(m, withField(GOOD[m], field, bad))
      t.equal(err?.code, 'SC_AGENT_BAD_REQUEST', `${m} ${field}=${JSON.stringify(bad)}: refused`)
      t.ok(err?.message.startsWith(`${m}: ${shown(field)}`), `names ${m} and ${shown(field)}: ${err?.message}`)
    }
  }
})

t.test('a missing required field is named; missing params count as {}', async t => {
  const { name: _name, ...noName } = launch
  t.match(refusal('vm.create', noName)?.message, /^vm\.create: params\.name: must be a VM name .*got nothing/)
  t.match(refusal('vm.status', undefined)?.message, /^vm\.status: params\.name/)
  t.same(parseParams('vm.list', undefined), {}, 'vm.list without params')
  t.match(refusal('vm.list', [])?.message, /^vm\.list: params: must be an object/)
})

t.test('names that become paths or devices: \'/\', \'..\', spaces, too long are refused', async t => {
  const vmNames = ['a/b', '..', '../etc', 'web 1', 'a'.repeat(33), '', '-x', 'Web']
  for (const n of vmNames) t.ok(refusal('vm.create', { ...launch, name: n }) !== undefined, `VM name ${JSON.stringify(n)}`)
  t.equal(refusal('vm.create', { ...launch, name: 'a'.repeat(32) }), undefined, 'a 32-character VM name is fine')
  const devices = ['a/b', '..', '.', 'tap 0', 'x'.repeat(16), '', 'tap\n0']
  for (const d of devices) {
    t.ok(refusal('vw.attach', { taps: [{ tap: d, bridge: 'br0' }] }) !== undefined, `TAP name ${JSON.stringify(d)}`)
    t.ok(refusal('vw.attach', { taps: [{ tap: 'tap0', bridge: d }] }) !== undefined, `bridge name ${JSON.stringify(d)}`)
  }
  t.equal(refusal('vw.attach', { taps: [{ tap: 'x'.repeat(15), bridge: 'br_0.1-a' }] }), undefined, '15 characters of A-Za-z0-9_.- are fine')
  for (const d of ['a/b', '..', 'my disk', 'd'.repeat(33)]) t.ok(refusal('vm.create', { ...launch, disks: [{ name: d, sizeBytes: MiB }] }) !== undefined, `disk name ${JSON.stringify(d)}`)
  for (const i of ['../0123456789ab', '0123456789abcdef/..', ' 0123456789abcdef']) t.ok(refusal('vm.destroy', { name: 'web1', keep: i }) !== undefined, `migration id ${JSON.stringify(i)}`)
})

t.test('request lines: malformed ones and unknown methods', async t => {
  const r1 = parseRequestLine('{not json')
  t.ok('error' in r1 && r1.error.code === 'SC_AGENT_BAD_REQUEST' && r1.id === -1, 'not JSON: bad request, id -1')
  const r2 = parseRequestLine('{"id": 3}')
  t.ok('error' in r2 && r2.error.code === 'SC_AGENT_BAD_REQUEST' && r2.id === 3 && /request\.method/.test(r2.error.message), 'no method: bad request naming request.method')
  const r3 = parseRequestLine('{"id": 4, "method": "vm.explode", "params": {}}')
  t.ok('error' in r3 && r3.error.code === 'SC_AGENT_UNKNOWN_METHOD' && r3.id === 4, 'unknown method')
  t.same(parseRequestLine('{"id": 5, "method": "vm.status", "params": {"name": "web1"}}'), { id: 5, method: 'vm.status', params: { name: 'web1' } })
})

t.test('results the client relies on', async t => {
  t.same(parseResult('vm.migrate.active', { active: true }), { active: true })
  t.throws(() => parseResult('vm.migrate.active', { active: 'yes' }), /result\.active: must be true or false/)
  t.throws(() => parseResult('vm.console', {}), /result\.path/)
  t.throws(() => parseResult('vm.status', { name: 'web1', state: 'exploded' }), /result\.state/)
  t.throws(() => parseResult('vm.migrate.incoming', { nbdPort: 1 }), /result\.migrationPort/)
  t.same(parseResult('overdriver.table.export', { table }), { table })
  t.throws(() => parseResult('overdriver.table.export', { table: { ...table, entries: [[1, 2]] } }), /result\.table\.entries\[0\]/)
  t.equal(parseResult('vm.destroy', null), null)
  t.throws(() => parseResult('vm.destroy', { ok: true }), /result: must be null/)
})

t.test('pushes: known events pass, malformed or unknown ones are refused', async t => {
  const ts = new Date().toISOString()
  const progress = { type: 'migration.progress', ts, vm: 'web1', phase: 'memory', sentBytes: 1, remainingBytes: 2, dirtyRate: 0, iteration: 1, fraction: 0.5 }
  t.same(parseAgentMessage(JSON.stringify({ event: progress })), { kind: 'push', event: progress })
  t.throws(() => parseAgentMessage(JSON.stringify({ event: { ...progress, sentBytes: 'x' } })), /event\.sentBytes/)
  t.throws(() => parseAgentMessage(JSON.stringify({ event: { ...progress, vm: '../x' } })), /event\.vm/)
  t.same(parseAgentMessage(JSON.stringify({ event: { type: 'migration.switchover', ts, vm: 'web1' } })).kind, 'push')
  const swap = { type: 'overload.swap', ts, vm: 'web1', data: { enabled: true, reason: 'transient' } }
  t.same(parseAgentMessage(JSON.stringify({ event: swap })), { kind: 'push', event: swap })
  t.throws(() => parseAgentMessage(JSON.stringify({ event: { ...swap, data: { enabled: 'on' } } })), /enabled/)
  t.throws(() => parseAgentMessage(JSON.stringify({ event: { type: 'vm.exploded', ts } })), /event\.type/)
  t.throws(() => parseAgentMessage('{"id": 1}'), /message\.ok/)
  t.same(parseAgentMessage('{"id": 1, "ok": false, "error": {"code": "SC_X", "message": "m"}}'), { kind: 'error', id: 1, code: 'SC_X', message: 'm' })
})
