/** The `overdriver:` section and per-VM `swap:` in supercloud.yaml, through the spec loader. */
import t from 'tap'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { SpecError, type SpecIssue } from '../../../core/errors.ts'

const M = 1024 ** 2

const base = (extra: string, vmExtra = ''): string => `
sites:
  s1: { subnet: 198.18.1.0/24 }
hosts:
  host-a: { site: s1, driver: local, memory: 1G }
  host-b: { site: s1, driver: local, memory: 1G }
images:
  tiny: { builtin: tiny }
vms:
  web1:
    image: tiny
    host: host-a
    memory: { requested: 256M, allocated: 128M }
${vmExtra}${extra}`

function issuesOf (text: string): SpecIssue[] {
  try { parseSpec(text, 'supercloud.yaml') } catch (e) { if (e instanceof SpecError) return e.issues; throw e }
  throw new Error('expected a SpecError')
}

t.test('no overdriver section: no policy, no swap', async t => {
  const s = parseSpec(base(''), 'supercloud.yaml')
  t.equal(s.overdriver, undefined)
  t.equal(s.vms.web1?.swapBytes, undefined)
})

t.test('overdriver section and swap parse to the policy and swapBytes', async t => {
  const s = parseSpec(base(`
overdriver:
  interval: 1s
  overload: 50
  window: 3/4
  threshold: 20s
  adaptive: false
  repositories: { hosts: [host-b], memory: 128M }
`, '    swap: 256M\n'), 'supercloud.yaml')
  t.equal(s.vms.web1?.swapBytes, 256 * M)
  t.match(s.overdriver, {
    intervalMs: 1000,
    overloadOpsPerSec: 50,
    window: { size: 4, sustained: 3 },
    initialThresholdMs: 20000,
    adaptive: { enabled: false },
    repositories: { hosts: ['host-b'], memoryBytes: { 'host-b': 128 * M } }
  })
})

t.test('an empty overdriver section gives the defaults', async t => {
  const s = parseSpec(base('\noverdriver: {}\n'), 'supercloud.yaml')
  t.match(s.overdriver, { intervalMs: 10000, overloadOpsPerSec: 200, window: { size: 12, sustained: 8 }, repositories: { hosts: [] } })
})

t.test('policy errors carry file, line, column and the field', async t => {
  const text = base(`
overdriver:
  window: 9/8
  repositories:
    hosts: [hots-a]
    memory: 128M
`)
  const issues = issuesOf(text)
  const lines = text.split('\n')
  const w = issues.find(i => i.field === 'overdriver.window')
  t.ok(w, 'window issue')
  t.match(w?.message, /9 overloaded intervals can never happen in a window of 8/)
  t.equal(w?.file, 'supercloud.yaml')
  t.match(lines[(w?.line ?? 1) - 1], /window: 9\/8/, 'the line is the window line')
  t.equal(w?.column, lines[(w?.line ?? 1) - 1]!.indexOf('9/8') + 1, 'the column points at the value')
  const h = issues.find(i => i.field === 'overdriver.repositories.hosts[0]' || i.field === 'overdriver.repositories.hosts.0')
  t.ok(h, `host issue among ${issues.map(i => i.field).join(', ')}`)
  t.match(h?.message, /no host named 'hots-a' \(did you mean 'host-a'\?\)/)
  t.match(lines[(h?.line ?? 1) - 1], /hots-a/)
})

t.test('repository memory above what the host offers is rejected', async t => {
  const issues = issuesOf(base('\noverdriver:\n  repositories: { hosts: [host-b], memory: 2G }\n'))
  t.match(issues.map(i => i.message).join('\n'), /2G is more than host host-b offers \(1G\)/)
})

t.test('swap must be a size in MiB above 0', async t => {
  t.match(issuesOf(base('', '    swap: 0\n')).map(i => `${i.field}: ${i.message}`).join('\n'), /vms\.web1\.swap: must be above 0/)
  t.match(issuesOf(base('', '    swap: lots\n')).map(i => i.field).join('\n'), /vms\.web1\.swap/)
  t.match(issuesOf(base('', '    swap: 1000K\n')).map(i => `${i.field}: ${i.message}`).join('\n'), /vms\.web1\.swap: .*whole number of MiB/)
})
