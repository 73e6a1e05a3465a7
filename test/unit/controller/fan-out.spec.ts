/**
 * Host fan-out is bounded (SUPERCLOUD_HOST_CONCURRENCY, default 16): `up`, `status` and `down`
 * over 40 in-memory hosts whose calls take a few milliseconds never have more hosts busy at
 * once than the limit, and still reach every host (test/unit/controller/mem.ts).
 */
import t from 'tap'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import type { Spec } from '../../../core/spec.ts'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { Bench } from './mem.ts'

const HOSTS = 40

/** `n` hosts on one site, one VM on each. */
function manyHosts (n: number): Spec {
  const lines = ['name: unit', 'sites:', '  s1: { subnet: 198.18.0.0/20 }', 'hosts:']
  for (let i = 0; i < n; i++) lines.push(`  h${i}: { site: s1, memory: 1G, hypervisor: { accel: tcg } }`)
  lines.push('images:', '  tiny: { builtin: tiny }', 'vms:')
  for (let i = 0; i < n; i++) lines.push(`  v${i}: { image: tiny, host: h${i}, memory: 128M }`)
  return parseSpec(lines.join('\n') + '\n', join(tmpdir(), 'unit', 'supercloud.yaml'))
}

t.test('with SUPERCLOUD_HOST_CONCURRENCY=4, up, status and down keep at most 4 hosts busy and reach all 40', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  b.cloud.latencyMs = 3
  const spec = manyHosts(HOSTS)
  const env = { SUPERCLOUD_HOST_CONCURRENCY: '4' }

  await b.controller(env).up(spec)
  t.equal(b.cloud.hosts.size, HOSTS, 'every host created')
  t.equal(b.cloud.maxBusyHosts, 4, 'up: hosts created 4 at a time')

  b.cloud.maxBusyHosts = 0
  const s = await b.controller(env).status()
  t.equal(s.hosts.filter(h => h.health === 'running').length, HOSTS, 'status saw every host running')
  t.equal(s.vms.filter(v => v.state === 'running').length, HOSTS, 'and every VM')
  t.equal(b.cloud.maxBusyHosts, 4, 'status: 4 hosts observed at a time')

  b.cloud.maxBusyHosts = 0
  const c = b.controller(env)
  t.same((await c.plan(spec)).actions, [], 'a no-op plan')
  t.ok(b.cloud.maxBusyHosts <= 4, `plan (observe): at most 4 hosts busy (${b.cloud.maxBusyHosts})`)

  b.cloud.maxBusyHosts = 0
  await b.controller(env).down()
  t.equal(b.cloud.hosts.size, 0, 'every host removed')
  t.equal(b.cloud.maxBusyHosts, 4, 'down: 4 hosts at a time')
})

t.test('by default 16 hosts at once', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  b.cloud.latencyMs = 3
  await b.controller({}).up(manyHosts(HOSTS))
  b.cloud.maxBusyHosts = 0
  const s = await b.controller({}).status()
  t.equal(s.hosts.filter(h => h.health === 'running').length, HOSTS)
  t.equal(b.cloud.maxBusyHosts, 16)
})
