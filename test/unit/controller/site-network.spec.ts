/**
 * The site-network rule (issue 18 item 6): a VM with a NIC on its site network keeps its
 * address on a move, so it may move only within its site. `migrate` refuses a move to another
 * site with SC_MIGRATION_NETWORK before anything moves, `up` refuses a changed `host:` that
 * would move it there, and a VM whose NICs are all on VirtualWire wires (or that has none)
 * moves across sites. The pure rule, then the real controller over the in-memory cloud (mem.ts).
 */
import t from 'tap'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { assertKeepsNetwork, MigrationNetworkError, refusedTargets, strandedNics, strandedReason } from '../../../blanket-manager/migration/site-network.ts'
import type { Spec } from '../../../core/spec.ts'
import { SupercloudError } from '../../../core/errors.ts'
import { Bench } from './mem.ts'

/** Sites s1 (h1, h2) and s2 (h3); `vms` the lines under `vms:`, `extra` more spec. */
function twoSites (vms: string[], extra: string[] = []): Spec {
  return parseSpec([
    'name: unit',
    'sites:',
    '  s1: { subnet: 198.18.0.0/24 }',
    '  s2: { subnet: 198.18.5.0/24 }',
    'hosts:',
    '  h1: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    '  h2: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    '  h3: { site: s2, memory: 1G, hypervisor: { accel: tcg } }',
    'images:',
    '  tiny: { builtin: tiny }',
    'vms:',
    ...vms,
    ...extra,
    ''
  ].join('\n'), join(tmpdir(), 'unit', 'supercloud.yaml'))
}

const DB = '  db: { image: tiny, host: h1, memory: 128M, nics: [ { name: eth0, address: 198.18.0.101/24 } ] }'

t.test('strandedNics: site-network NICs across sites only; wired NICs and same-site moves keep the network', async t => {
  const spec = twoSites([
    DB,
    '  bare: { image: tiny, host: h1, memory: 64M, nics: [] }',
    '  auto: { image: tiny, host: h1, memory: 64M }',
    '  two: { image: tiny, host: h1, memory: 64M, nics: [ { name: eth0, address: 198.19.10.1/24 }, { name: eth1, address: 198.18.0.102/24 } ] }',
    '  peer: { image: tiny, host: h3, memory: 64M, nics: [ { name: eth0, address: 198.19.10.2/24 } ] }'
  ], ['network:', '  wires: [ "two.eth0 -- peer.eth0" ]', '  extenders: { s1: { gateway: h1 }, s2: { gateway: h3 } }'])
  const wires = spec.network.wires
  t.strictSame(strandedNics(spec, wires, 'db', 'h1', 'h2'), [], 'within the site')
  t.strictSame(strandedNics(spec, wires, 'db', 'h1', 'h3'), [{ vm: 'db', nic: 'eth0', address: '198.18.0.101/24', site: 's1', subnet: '198.18.0.0/24', to: 'h3', toSite: 's2' }])
  t.strictSame(strandedNics(spec, wires, 'bare', 'h1', 'h3'), [], 'no NIC: nothing to cut off')
  t.match(strandedNics(spec, wires, 'auto', 'h1', 'h3', { eth0: '198.18.0.100/24' }), [{ nic: 'eth0', address: '198.18.0.100/24' }], 'the default NIC is on the site network; its allocated address is named')
  t.match(strandedNics(spec, wires, 'two', 'h1', 'h3'), [{ nic: 'eth1' }], 'only the NIC that is not on a wire')
  t.equal(strandedNics(spec, wires, 'two', 'h1', 'h3').length, 1)
  t.strictSame(strandedNics(spec, [], 'peer', 'h3', 'h1').length, 1, 'without its wire the NIC is on the site network')
  t.strictSame(strandedNics(spec, wires, 'peer', 'h3', 'h1'), [], 'a wired VM crosses (the extender rule is checked apart)')
  t.equal(strandedReason([]), undefined)
  t.equal(strandedReason(strandedNics(spec, wires, 'db', 'h1', 'h3')), "db's NIC eth0 (198.18.0.101/24) is on the site network of s1 (198.18.0.0/24), which does not reach h3 in site s2")
  t.strictSame(refusedTargets(spec, wires, { db: 'h1', bare: 'h1', peer: 'h3' }), { h3: { db: "db's NIC eth0 (198.18.0.101/24) is on the site network of s1 (198.18.0.0/24), which does not reach h3 in site s2" } })
})

t.test('the refusal names the VM, the NIC, its site network, the destination site and the ways out', async t => {
  const spec = twoSites([DB])
  t.doesNotThrow(() => { assertKeepsNetwork(spec, [], 'db', 'h1', 'h2') })
  const err = (() => { try { assertKeepsNetwork(spec, [], 'db', 'h1', 'h3'); return undefined } catch (e) { return e } })()
  t.ok(err instanceof MigrationNetworkError)
  t.equal((err as SupercloudError).code, 'SC_MIGRATION_NETWORK')
  t.equal((err as SupercloudError).exitCode, 2)
  const m = (err as Error).message
  t.match(m, /^db cannot move to h3 \(site s2\): .*nothing was moved/)
  t.match(m, /NIC eth0 \(198\.18\.0\.101\/24\) is on the site network of s1 \(198\.18\.0\.0\/24\)/)
  t.match(m, /move it within s1 \(h2\)/, 'the other hosts of its site')
  t.match(m, /VirtualWire wire \(network\.wires/)
  t.match(m, /re-address it: give eth0 an address in s2's subnet/)
})

/** The state after an `up` of `spec` on the in-memory cloud. */
async function upped (t: { teardown: (fn: () => void) => void }, spec: Spec): Promise<{ b: Bench, c: ReturnType<Bench['controller']> }> {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const c = b.controller()
  await c.up(spec)
  return { b, c }
}

t.test('migrate refuses a move to another site before anything moves; within the site it moves', async t => {
  const spec = twoSites([DB, '  bare: { image: tiny, host: h1, memory: 64M, nics: [] }'])
  const { b, c } = await upped(t, spec)
  const before = c.store.snapshot()
  const err = await c.migrate(spec, 'db', 'h3').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof MigrationNetworkError, `refused: ${String(err)}`)
  t.equal((err as SupercloudError).code, 'SC_MIGRATION_NETWORK')
  t.same(c.store.snapshot(), before, 'the state is unchanged (not even claimed as migrating)')
  t.same(b.cloud.host('h1').running(), ['bare', 'db'], 'db still runs on h1')
  t.same(b.cloud.host('h3').calls.filter(x => /Incoming|createVm/.test(x)), [], 'nothing was prepared on h3')
  const r = await c.migrate(spec, 'db', 'h2')
  t.equal(r.to, 'h2', 'within its site it moves')
  const bare = await c.migrate(spec, 'bare', 'h3')
  t.equal(bare.to, 'h3', 'a VM without a NIC crosses sites')
})

t.test('up refuses a changed host: that would move a VM off its site network, before anything changes', async t => {
  const spec = twoSites([DB])
  const { b, c } = await upped(t, spec)
  const before = c.store.snapshot()
  const moved = twoSites([DB.replace('host: h1', 'host: h3')])
  const planned = await c.plan(moved).then(() => undefined, (e: unknown) => e)
  t.equal((planned as SupercloudError).code, 'SC_MIGRATION_NETWORK', 'the plan itself refuses it (what `plan` and `up` show first)')
  const err = await c.up(moved).then(() => undefined, (e: unknown) => e)
  t.equal((err as SupercloudError).code, 'SC_MIGRATION_NETWORK', String(err))
  t.match((err as Error).message, /^db cannot move to h3 \(site s2\)/)
  t.same(c.store.snapshot().vms, before.vms, 'no VM changed')
  t.same(b.cloud.host('h1').running(), ['db'])
  const within = await c.up(twoSites([DB.replace('host: h1', 'host: h2')]))
  t.ok(within.applied > 0, 'a changed host within the site still moves it')
  t.same(b.cloud.host('h2').running(), ['db'])
})
