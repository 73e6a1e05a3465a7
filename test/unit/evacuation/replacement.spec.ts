/**
 * Replacement capacity (blanket-manager/evacuation/replacement.ts, replace-host.ts, evacuate.ts):
 * the candidates (the spot pool's other types, then on-demand), and evacuateHost launching one
 * for the VMs no host has room for, through an in-memory controller whose addHost takes time on
 * the test clock: used when ready in time; otherwise those VMs are said lost before the deadline
 * and the launch is given up.
 */
import t from 'tap'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { evacuateHost } from '../../../blanket-manager/evacuation/evacuate.ts'
import { replacementCandidates, replacementName } from '../../../blanket-manager/evacuation/replacement.ts'
import type { HostSpec } from '../../../core/spec.ts'
import { Ec2Error } from '../../../drivers/ec2/errors.ts'
import { controller } from './in-memory-controller.ts'

const ec2 = (type: string, extra = ''): string => `{ region: us-east-1, ami: ami-0d5eb1a2, instanceType: ${type}${extra} }`

function bed (spot = ', spot: { maxPrice: 0.02, instanceTypes: [t3a.small, m5.large] }'): ReturnType<typeof parseSpec> {
  return parseSpec(`name: evac
sites:
  aws: {}
  lab: { subnet: 198.18.60.0/24 }
hosts:
  spot1: { site: aws, driver: ec2, memory: 512M, ec2: ${ec2('t3.small', spot)} }
  aws2: { site: aws, driver: ec2, memory: 256M, ec2: ${ec2('t3.small')} }
  lab1: { site: lab, memory: 128M }
images:
  tiny: { builtin: tiny }
# No NICs: the site-network rule would keep the VMs in site aws; these cases are about capacity.
vms:
  a: { image: tiny, host: spot1, memory: 96M, nics: [] }
  b: { image: tiny, host: spot1, memory: 200M, nics: [] }
  c: { image: tiny, host: spot1, memory: 200M, nics: [] }
`, '/specs/supercloud.yaml')
}

t.test('candidates: the spot pool\'s other types at its maximum price, then on-demand of the same type', async t => {
  const spec = bed()
  const src = spec.hosts.spot1 as HostSpec
  const c = replacementCandidates(src, new Set(['spot1', 'aws2', 'spot1-r1']))
  t.same(c.map(x => x.what), ['spot t3a.small at most $0.02/h', 'spot m5.large at most $0.02/h', 'on-demand t3.small'])
  t.same(c.map(x => x.host.name), ['spot1-r2', 'spot1-r2', 'spot1-r2'], 'a name of its own, never one of the spec\'s')
  t.same(c.map(x => [x.host.site, x.host.memoryBytes, x.host.ec2?.spot ?? false]), [['aws', 512 * 1024 * 1024, true], ['aws', 512 * 1024 * 1024, true], ['aws', 512 * 1024 * 1024, false]])
  t.equal(c[2]?.host.ec2?.spotPool, undefined, 'on-demand: no pool')
  t.same(replacementCandidates(bed(', spot: true').hosts.spot1 as HostSpec, new Set()).map(x => x.what), ['on-demand t3.small'], 'without a pool: on-demand only')
  t.same(replacementCandidates(spec.hosts.lab1 as HostSpec, new Set()), [], 'a local host is not replaced')
  t.equal(replacementName('h', new Set(['h-r1', 'h-r2'])), 'h-r3')
})

t.test('no room for c: a replacement is launched while the others move (the spot pool\'s first type out of capacity), and c moves there', async t => {
  const spec = bed()
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const launched: string[] = []
  const c = controller(spec, clock, 0.01, undefined, async (s, h) => {
    launched.push(`${h.name} ${h.ec2?.spot === true ? 'spot' : 'on-demand'} ${h.ec2?.instanceType ?? ''}`)
    t.ok(s.hosts.spot1 !== undefined, 'launched with the spec')
    if (h.ec2?.instanceType === 't3a.small') throw new Ec2Error('SC_EC2_CAPACITY', 'EC2 has no capacity for launching host spot1-r1 right now (InsufficientInstanceCapacity)')
    clock.now += 30_000
  })
  const said: string[] = []
  // The launch takes 30 s of the test clock, well before c's last start: the wait never runs out.
  const r = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, onProgress: ev => said.push(ev.message), sleep: async () => { await new Promise(() => {}) } })
  t.same(launched, ['spot1-r1 spot t3a.small', 'spot1-r1 spot m5.large'])
  t.same(r.moved.map(m => [m.vm, m.to, m.beforeDeadline]).sort(), [['a', 'lab1', true], ['b', 'aws2', true], ['c', 'spot1-r1', true]])
  t.same(r.stranded, [])
  t.same(r.replacements?.map(x => [x.host, x.what, x.ready]), [['spot1-r1', 'spot t3a.small at most $0.02/h', false], ['spot1-r1', 'spot m5.large at most $0.02/h', true]])
  t.match(r.replacements?.[0]?.error, /no capacity/)
  const text = said.join('\n')
  t.match(text, /no host has room for c: launching a replacement host while the others move[\s\S]*launching replacement host spot1-r1 \(spot t3a\.small[\s\S]*could not be launched: EC2 has no capacity[\s\S]*replacement host spot1-r1 \(spot m5\.large at most \$0\.02\/h\) is ready[\s\S]*c -> spot1-r1/)
})

t.test('the replacement not ready in time: its VM is said lost before the deadline, the evacuation ends then, the launch is given up', async t => {
  const spec = bed(', spot: true')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const deadline = clock.now + 120_000
  let aborted = false
  const c = controller(spec, clock, 0.01, undefined, async (_s, _h, o) => {
    await new Promise<void>((resolve, reject) => { o.signal?.addEventListener('abort', () => { aborted = true; reject(new Error('cancelled')) }) })
  })
  const said: Array<{ at: number, message: string }> = []
  const err = await evacuateHost(c, spec, 'spot1', { deadline, now: () => clock.now, onProgress: ev => said.push({ at: clock.now, message: ev.message }), sleep: async ms => { clock.now += ms } }).catch((e: unknown) => e)
  t.match(err, { code: 'SC_EVACUATION_INCOMPLETE' })
  t.match((err as Error).message, /left 1 VM\(s\) on it: c \(no host can take it: no host has room and spot1-r1 was not ready \d+ s before the deadline/)
  const lost = said.find(s => /^c cannot make it before the deadline 2026-12-07T14:02:00.000Z/.test(s.message))
  t.ok(lost !== undefined && lost.at < deadline, `said ${lost !== undefined ? Math.round((deadline - lost.at) / 1000) : '?'} s before the deadline`)
  t.ok(clock.now < deadline, 'the evacuation ended before the deadline')
  t.ok(aborted, 'the launch was given up')
  t.same((err as { result: { moved: Array<{ vm: string }> } }).result.moved.map(m => m.vm).sort(), ['a', 'b'], 'the others moved meanwhile')
})

t.test('without a way to add hosts (evacuate by hand on a local supercloud) nothing is launched: stranded as before', async t => {
  const spec = bed()
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const err = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now }).catch((e: unknown) => e)
  t.match((err as Error).message, /c \(no host can take it: needs 200M/)
  t.equal((err as { result: { replacements?: unknown } }).result.replacements, undefined)
})
