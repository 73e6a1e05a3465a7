import t from 'tap'
import { parseOverdriverPolicy, parseWindow } from '../../../overdriver/decision/policy.ts'

const M = 1024 * 1024
const ctx = { hosts: { 'host-a': { memoryBytes: 2048 * M }, 'host-b': { memoryBytes: 1024 * M }, 'host-c': { memoryBytes: 1024 * M } } }

t.test('no section: the seed defaults and no repositories', async t => {
  const r = parseOverdriverPolicy(undefined, ctx)
  t.same(r.issues, [])
  t.match(r.policy, { intervalMs: 10_000, overloadOpsPerSec: 200, window: { size: 12, sustained: 8 }, initialThresholdMs: 120_000, adaptive: { enabled: true, baseCount: 10 }, confidence: 0.97, repositories: { hosts: [], memoryBytes: {} } })
})

t.test('a full section', async t => {
  const r = parseOverdriverPolicy({
    interval: '5s', overload: 150, window: '6/9', threshold: '90s', adaptive: { base: 4 }, confidence: 0.99,
    repositories: { hosts: ['host-a', 'host-b'], memory: { 'host-a': '512M', 'host-b': '128M' } }
  }, ctx)
  t.same(r.issues, [])
  t.match(r.policy, { intervalMs: 5000, overloadOpsPerSec: 150, window: { size: 9, sustained: 6 }, initialThresholdMs: 90_000, adaptive: { enabled: true, baseCount: 4 }, confidence: 0.99 })
  t.same(r.policy?.repositories, { hosts: ['host-a', 'host-b'], memoryBytes: { 'host-a': 512 * M, 'host-b': 128 * M } })
})

t.test('shorthands: one memory for all hosts, adaptive off, bare seconds, window object, "200 ops/s"', async t => {
  const r = parseOverdriverPolicy({ interval: 10, overload: '200 ops/s', window: { sustained: 2, size: 3 }, adaptive: 'off', repositories: { memory: '64M' } }, ctx)
  t.same(r.issues, [])
  t.equal(r.policy?.intervalMs, 10_000)
  t.equal(r.policy?.adaptive.enabled, false)
  t.same(r.policy?.repositories.hosts, ['host-a', 'host-b', 'host-c'], 'all hosts by default')
  t.same(r.policy?.repositories.memoryBytes, { 'host-a': 64 * M, 'host-b': 64 * M, 'host-c': 64 * M })
})

t.test('every bad value is reported at its field path', async t => {
  const cases: Array<[unknown, string, RegExp]> = [
    ['yes', 'overdriver', /expected a mapping/],
    [{ intervall: '10s' }, 'overdriver.intervall', /did you mean 'interval'/],
    [{ interval: '10 parsecs' }, 'overdriver.interval', /expected a duration/],
    [{ interval: '100ms' }, 'overdriver.interval', /from 1s to 1h/],
    [{ interval: true }, 'overdriver.interval', /expected a duration/],
    [{ overload: -3 }, 'overdriver.overload', /above 0/],
    [{ overload: 'lots' }, 'overdriver.overload', /above 0/],
    [{ window: '9/8' }, 'overdriver.window', /can never happen/],
    [{ window: '8 in 12' }, 'overdriver.window', /like '8\/12'/],
    [{ window: '0/12' }, 'overdriver.window', />= 1/],
    [{ window: 12 }, 'overdriver.window', /like '8\/12'/],
    [{ threshold: '5s' }, 'overdriver.threshold', /at least one interval/],
    [{ adaptive: 'maybe' }, 'overdriver.adaptive', /true, false/],
    [{ adaptive: { base: 0 } }, 'overdriver.adaptive.base', />= 1/],
    [{ adaptive: { enabled: 'yes' } }, 'overdriver.adaptive.enabled', /true or false/],
    [{ adaptive: { bsae: 3 } }, 'overdriver.adaptive.bsae', /did you mean 'base'/],
    [{ confidence: 1 }, 'overdriver.confidence', /between 0 and 1/],
    [{ repositories: [] }, 'overdriver.repositories', /mapping/],
    [{ repositories: { hosts: ['host-d'], memory: '1M' } }, 'overdriver.repositories.hosts.0', /no host named 'host-d'/],
    [{ repositories: { hosts: ['hots-a'], memory: '1M' } }, 'overdriver.repositories.hosts.0', /did you mean 'host-a'/],
    [{ repositories: { hosts: ['host-a', 'host-a'], memory: '1M' } }, 'overdriver.repositories.hosts.1', /listed twice/],
    [{ repositories: { hosts: 'host-a', memory: '1M' } }, 'overdriver.repositories.hosts', /list of host names/],
    [{ repositories: { hosts: ['host-a'] } }, 'overdriver.repositories.memory', /how much memory/],
    [{ repositories: { hosts: ['host-b'], memory: '2G' } }, 'overdriver.repositories.memory', /more than host host-b offers \(1G\)/],
    [{ repositories: { hosts: ['host-a'], memory: '0' } }, 'overdriver.repositories.memory', /above 0/],
    [{ repositories: { hosts: ['host-a'], memory: '5000' } }, 'overdriver.repositories.memory', /4K pages/],
    [{ repositories: { hosts: ['host-a'], memory: 'lots' } }, 'overdriver.repositories.memory', /a size like 512M/],
    [{ repositories: { hosts: ['host-a'], memory: { 'host-b': '1M' } } }, 'overdriver.repositories.memory.host-b', /not one of the repository hosts/],
    [{ repositories: { hosts: ['host-a'], memory: { 'host-b': '1M' } } }, 'overdriver.repositories.memory', /no memory given for repository host 'host-a'/]
  ]
  for (const [raw, field, message] of cases) {
    const r = parseOverdriverPolicy(raw, ctx)
    t.equal(r.policy, undefined, `${JSON.stringify(raw)} gives no policy`)
    const hit = r.issues.find(i => i.field === field && message.test(i.message))
    t.ok(hit, `${JSON.stringify(raw)} → ${field}: ${message}; got ${JSON.stringify(r.issues)}`)
  }
})

t.test('one bad shared memory value is reported once, not per host', async t => {
  const r = parseOverdriverPolicy({ repositories: { memory: 'lots' } }, ctx)
  t.equal(r.issues.length, 1)
})

t.test('parseWindow', async t => {
  t.same(parseWindow('8/12'), { size: 12, sustained: 8 })
  t.same(parseWindow(' 8 of 12 '), { size: 12, sustained: 8 })
  t.same(parseWindow({ size: 1, sustained: 1 }), { size: 1, sustained: 1 })
  t.type(parseWindow('8/0'), 'string')
  t.type(parseWindow({ size: 1.5, sustained: 1 }), 'string')
})

t.test('grace and migration-timeout: optional, validated, absent from the policy unless given', async t => {
  const none = parseOverdriverPolicy({}, ctx)
  t.equal(none.policy?.arrivalGraceIntervals, undefined)
  t.equal(none.policy?.migrationTimeoutMs, undefined)
  const r = parseOverdriverPolicy({ interval: '2s', grace: 0, 'migration-timeout': '5m' }, ctx)
  t.same(r.issues, [])
  t.equal(r.policy?.arrivalGraceIntervals, 0)
  t.equal(r.policy?.migrationTimeoutMs, 300_000)
  const bad = parseOverdriverPolicy({ interval: '10s', grace: 1.5, 'migration-timeout': '5s' }, ctx)
  t.same(bad.issues.map(i => i.field).sort(), ['overdriver.grace', 'overdriver.migration-timeout'])
  t.match(bad.issues.find(i => i.field === 'overdriver.migration-timeout')?.message, /at least one interval/)
})
