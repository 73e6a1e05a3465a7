/**
 * The extender rule enforced (issue 14): a wire may cross sites only with an extender in both.
 * `plan`/`up` refuse a placement that would break it (auto-placed VMs included), and `migrate`
 * refuses a move that would, before anything moves. In-memory cloud (mem.ts), real controller.
 */
import t from 'tap'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { crossSiteMoveProblems, CrossSiteMigrationError } from '../../../blanket-manager/migration/cross-site.ts'
import type { Spec } from '../../../core/spec.ts'
import { SupercloudError } from '../../../core/errors.ts'
import { Bench } from './mem.ts'

/** Sites s1 (h1) and s2 (h2); web (on h1) wired to db; `db` is the db VM's line, `extra` more spec. */
function wired (db: string, extra = ''): Spec {
  return parseSpec([
    'name: unit',
    'sites:',
    '  s1: { subnet: 198.18.0.0/24 }',
    '  s2: { subnet: 198.18.5.0/24 }',
    'hosts:',
    '  h1: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    '  h2: { site: s2, memory: 1G, hypervisor: { accel: tcg } }',
    'images:',
    '  tiny: { builtin: tiny }',
    'vms:',
    '  web: { image: tiny, host: h1, memory: 800M, nics: [ { name: eth0, address: 198.19.10.11/24 } ] }',
    `  db: { image: tiny, ${db} nics: [ { name: eth0, address: 198.19.10.21/24 } ] }`,
    'network:',
    '  wires: [ "web.eth0 -- db.eth0" ]',
    extra,
    ''
  ].join('\n'), join(tmpdir(), 'unit', 'supercloud.yaml'))
}

t.test('crossSiteMoveProblems: only the moved VM\'s wires, none with extenders in both sites', async t => {
  const spec = wired('host: h1, memory: 128M,')
  t.strictSame(crossSiteMoveProblems(spec, spec.network.wires, { web: 'h1', db: 'h1' }, 'db', 'h1'), [])
  const p = crossSiteMoveProblems(spec, spec.network.wires, { web: 'h1', db: 'h1' }, 'db', 'h2')
  t.equal(p.length, 1)
  t.match(p[0], /^network\.wires\[0\]: web\.eth0 \(site s1\) -- db\.eth0 \(site s2\) crosses sites/)
  t.strictSame(crossSiteMoveProblems(spec, [], { web: 'h1', db: 'h1' }, 'db', 'h2'), [], 'an unwired VM moves freely')
  const ext = wired('host: h1, memory: 128M,')
  ext.network.extenders = { s1: { site: 's1', gateway: 'h1' }, s2: { site: 's2', gateway: 'h2' } }
  t.strictSame(crossSiteMoveProblems(ext, ext.network.wires, { web: 'h1', db: 'h1' }, 'db', 'h2'), [], 'extenders in both sites carry it')
})

t.test('plan refuses an auto-placement that puts a wire across sites in clear', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const c = b.controller()
  // db has no host: h1 is too full for it, so placement puts it on h2, in the other site.
  const err = await c.plan(wired('memory: 300M,')).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof SupercloudError)
  t.equal((err as SupercloudError).code, 'SC_WIRE_INVALID')
  t.match((err as Error).message, /network\.wires\[0\]: web\.eth0 \(site s1\) -- db\.eth0 \(site s2\) crosses sites but sites s1 and s2 have no extender/)
  t.same(c.store.snapshot().hosts, [], 'nothing created')
  t.throws(() => b.cloud.host('h1'), /no mem host/, 'no host was made')
})

t.test('migrate refuses to move a wired VM across sites without extenders, before anything moves', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const spec = wired('host: h1, memory: 128M,')
  const c = b.controller()
  // The state as after an up: both VMs on h1, both hosts ready.
  for (const h of ['h1', 'h2']) {
    c.store.putHost({ name: h, site: h === 'h1' ? 's1' : 's2', driver: 'local', specHash: 'x', status: 'ready', bootstrapped: true, record: { name: h, site: h === 'h1' ? 's1' : 's2', driver: 'local', address: '198.18.0.10', ssh: { host: '198.18.0.10', port: 22, username: 'root', privateKeyPath: '/k' }, stateDir: '/s', guestBridge: 'br0', driverData: {} } })
  }
  for (const v of ['web', 'db']) {
    c.store.putVm({ name: v, host: 'h1', specHash: 'x', status: 'ready', record: { host: 'h1', nics: [], memory: { requestedBytes: 128 << 20, allocatedBytes: 128 << 20 }, cpus: 1, image: 'tiny' } })
  }
  const before = c.store.snapshot()
  const err = await c.migrate(spec, 'db', 'h2').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof CrossSiteMigrationError, 'a CrossSiteMigrationError')
  t.equal((err as SupercloudError).code, 'SC_MIGRATE_CROSS_SITE')
  t.equal((err as SupercloudError).exitCode, 2)
  t.match((err as Error).message, /db cannot move to h2: .*nothing was moved[\s\S]*network\.wires\[0\]: web\.eth0 \(site s1\) -- db\.eth0 \(site s2\) crosses sites[\s\S]*extender/)
  t.same(c.store.snapshot(), before, 'the state is unchanged (not even claimed as migrating)')
})
