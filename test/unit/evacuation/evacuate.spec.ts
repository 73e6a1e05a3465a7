/**
 * evacuateHost's orchestration (blanket-manager/evacuation/evacuate.ts) with an in-memory
 * controller (state rows, and a migrate that moves the row and reports a transfer): the plan is
 * said before anything moves, VMs without room are named, a VM made late by the measured
 * bandwidth is said before its turn, the extender and site-network rules are kept, and VMs left end in
 * SC_EVACUATION_INCOMPLETE; unhurried (a rebalance recommendation) every VM moves by pre-copy
 * without a deadline until an interruption notice hurries the rest.
 */
import t from 'tap'
import type { ProgressEvent } from '../../../core/progress.ts'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { VmMovingError } from '../../../core/errors.ts'
import { evacuateHost } from '../../../blanket-manager/evacuation/evacuate.ts'
import { controller } from './in-memory-controller.ts'


function bed (aws2Memory: string, bExtra = ''): ReturnType<typeof parseSpec> {
  return parseSpec(`name: evac
sites:
  aws: { subnet: 198.18.200.0/24 }
  lab: { subnet: 198.18.60.0/24 }
hosts:
  spot1: { site: aws, memory: 1G }
  aws2: { site: aws, memory: ${aws2Memory} }
  lab1: { site: lab, memory: 2G }
images:
  tiny: { builtin: tiny }
vms:
  a: { image: tiny, host: spot1, memory: 96M, nics: [ { address: 198.19.10.1/24 } ] }
  b: { image: tiny, host: spot1, memory: 200M${bExtra} }
  c: { image: tiny, host: spot1, memory: 300M, nics: [] }
  w: { image: tiny, host: aws2, memory: 64M, nics: [ { address: 198.19.10.2/24 } ] }
network:
  wires: [ a.eth0 -- w.eth0 ]
`, 'supercloud.yaml')
}

t.test('all VMs moved within the site, smallest first, the plan said before the first move', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const said: ProgressEvent[] = []
  const r = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, onProgress: ev => said.push(ev) })
  t.same(c.moves, ['a->aws2 auto', 'b->aws2 auto', 'c->aws2 auto'], 'with the deadline: the plan\'s modes')
  t.same(r.moved.map(m => [m.vm, m.to, m.beforeDeadline]), [['a', 'aws2', true], ['b', 'aws2', true], ['c', 'aws2', true]])
  t.match(said[0]?.message, /^plan \(deadline 2026-12-07T14:02:00.000Z, 120 s from now\): a -> aws2 .*; b -> aws2 .*; c -> aws2 /)
  t.match(said[said.length - 1]?.message, /all 3 VM\(s\) moved, the last 1\d\d s before the deadline/)
})

t.test('no room: the VM is named before anything moves, the others still move, and the evacuation fails saying so', async t => {
  // aws2 has 196M free (w takes 64M): a (96M) fits, b (200M) and c (300M) do not; lab1 (a Xen host) cannot take QEMU guests.
  const spec = bed('260M')
  const lab1 = spec.hosts.lab1
  if (lab1 !== undefined) lab1.hypervisor = { ...lab1.hypervisor, backend: 'xen' }
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const said: string[] = []
  const err = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, onProgress: ev => said.push(ev.message) }).catch((e: unknown) => e)
  t.match(err, { code: 'SC_EVACUATION_INCOMPLETE' })
  t.match((err as Error).message, /left 2 VM\(s\) on it: c \(no host can take it: needs 300M; aws2 has 196M free; lab1: runs xen, spot1 runs qemu\); b \(no host can take it: needs 200M; .*\); moved a to aws2/)
  t.match(said[0], /^plan .*a -> aws2 .*; c: no host can take it .*; b: no host can take it/, 'said in the plan, before any move')
  t.same(c.moves, ['a->aws2 auto'])
})

t.test('the extender and site-network rules: a wired VM and a VM on its site network stay in their site, said in the plan', async t => {
  // b has the default NIC, on aws's site network; c has none; a's NIC is on a wire (no extenders).
  const spec = bed('64M')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const said: string[] = []
  const err = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, onProgress: ev => said.push(ev.message) }).catch((e: unknown) => e)
  t.match((err as Error).message, /a \(no host can take it: needs 96M; aws2 has 0M free; lab1: the extender rule/)
  t.match(said[0], /^plan .*b: no host can take it \(needs 200M; aws2 has 0M free; lab1: the site-network rule \(b's NIC eth0 is on the site network of aws \(198\.18\.200\.0\/24\), which does not reach lab1 in site lab\)\)/, 'b: said in the plan, before any move')
  t.same(c.moves, ['c->lab1 auto'], 'only the VM without a NIC crosses to the other site; b was never tried there')
  t.match(err, { code: 'SC_EVACUATION_INCOMPLETE' })
})

t.test('a slower link than assumed: the VM that will miss the deadline is said after the first move, before its turn', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  // 0.2 s per MiB (5 MiB/s): a takes 19 s, b 40 s, c 60 s; the deadline is 80 s away.
  const c = controller(spec, clock, 0.2)
  const said: string[] = []
  const err = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 80_000, now: () => clock.now, onProgress: ev => said.push(ev.message) }).catch((e: unknown) => e)
  t.notMatch(said[0], /AFTER THE DEADLINE/, 'the assumed gigabit made every VM look in time')
  const late = said.findIndex(m => /^c is not expected to make the deadline/.test(m))
  const cStarts = said.findIndex(m => /^c -> aws2/.test(m))
  t.ok(late > 0 && late < said.findIndex(m => /^b -> aws2/.test(m)) + 2 && (cStarts < 0 || late < cStarts), `said after a's move measured the link, before c's turn:\n${said.join('\n')}`)
  t.match(err, { code: 'SC_EVACUATION_INCOMPLETE' }, 'c ran out of time')
  t.match((err as Error).message, /left 1 VM\(s\) on it: c \(migration to aws2 failed: not done within \d+ ms\); moved a to aws2, b to aws2/)
})

t.test('unhurried (a rebalance recommendation): every VM by pre-copy, one at a time, no deadline', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const said: string[] = []
  const r = await evacuateHost(c, spec, 'spot1', { urgency: {}, now: () => clock.now, onProgress: ev => said.push(ev.message) })
  t.same(c.moves, ['a->aws2 precopy no-deadline', 'b->aws2 precopy no-deadline', 'c->aws2 precopy no-deadline'])
  t.equal(r.deadline, undefined)
  t.match(said[0], /^plan \(unhurried: pre-copy, one at a time\): a -> aws2/)
  t.match(said[said.length - 1], /^all 3 VM\(s\) moved$/)
})

t.test('an interruption notice during an unhurried evacuation: the rest is planned against its deadline, in its modes', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const urgency: { deadline?: number } = {}
  // The notice comes while a moves (0.2 s per MiB: a 19 s, b 40 s, c 60 s); 70 s left after a.
  const c = controller(spec, clock, 0.2, vm => { if (vm === 'a') urgency.deadline = clock.now + 70_000 })
  const said: string[] = []
  const err = await evacuateHost(c, spec, 'spot1', { urgency, now: () => clock.now, onProgress: ev => said.push(ev.message), bandwidth: 5 * 1024 * 1024 }).catch((e: unknown) => e)
  t.same(c.moves, ['a->aws2 precopy no-deadline', 'b->aws2 auto'], 'a by pre-copy as it started; b with the deadline')
  const hurried = said.findIndex(m => /^hurried: the host goes away at 2026-12-07T14:01:29.200Z/.test(m))
  t.ok(hurried > 0 && hurried < said.findIndex(m => /^b -> aws2 \(auto/.test(m)), `said before b's move:\n${said.join('\n')}`)
  t.match(said[hurried], /c -> aws2 .*AFTER THE DEADLINE/, 'c named late then, before its turn')
  t.match(err, { code: 'SC_EVACUATION_INCOMPLETE' })
  t.match((err as Error).message, /c \(migration to aws2 failed: not done within \d+ ms\); moved a to aws2, b to aws2/)
})

t.test('an interruption while another process migrates a VM of the host: the others first, then that VM again; it left by the other move', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const c = controller(spec, clock, 0.01)
  const migrate = c.migrate
  let refusals = 0
  c.migrate = async (s, vm, to, o) => {
    if (vm !== 'b') return await migrate(s, vm, to, o)
    refusals++
    // The other process (a `supercloud migrate b --to lab1`) holds b's move lock; it ends during the wait.
    if (refusals === 2) await migrate(s, 'b', 'lab1', {})
    throw new VmMovingError('b', 4242, { purpose: 'migrate' })
  }
  const said: string[] = []
  const r = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, onProgress: ev => said.push(ev.message), sleep: async ms => { clock.now += ms } })
  t.same(c.moves, ['a->aws2 auto', 'c->aws2 auto', 'b->lab1  no-deadline'], 'a and c moved while b was busy; b moved by the other process')
  t.same(r.failed, [])
  t.same(r.movedByOthers, [{ vm: 'b', to: 'lab1' }])
  t.match(said.join('\n'), /b is being moved by another process \(pid 4242\): looked at again after the other moves[\s\S]*c -> aws2[\s\S]*b left by another move \(now on lab1\)/)
})

t.test('a VM another process keeps moving until the deadline is reported failed, before the deadline', async t => {
  const spec = bed('1G')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const deadline = clock.now + 60_000
  const c = controller(spec, clock, 0.01)
  const migrate = c.migrate
  c.migrate = async (s, vm, to, o) => { if (vm === 'b') throw new VmMovingError('b', 4242); return await migrate(s, vm, to, o) }
  const err = await evacuateHost(c, spec, 'spot1', { deadline, now: () => clock.now, sleep: async ms => { clock.now += ms } }).catch((e: unknown) => e)
  t.match((err as Error).message, /left 1 VM\(s\) on it: b \(migration to aws2 failed: vm b is being moved by running process 4242/)
  t.ok(clock.now < deadline, 'given up before the deadline')
})

t.test('a second interruption, for the target host, during an evacuation: the rest goes elsewhere', async t => {
  // b without a NIC on aws's site network, so lab1 (site lab) may take it.
  const spec = bed('1G', ', nics: []')
  const clock = { now: Date.parse('2026-12-07T14:00:00Z') }
  const noticed = new Set(['spot1'])
  // aws2 gets its own notice while a moves to it.
  const c = controller(spec, clock, 0.01, vm => { if (vm === 'a') noticed.add('aws2') })
  const r = await evacuateHost(c, spec, 'spot1', { deadline: clock.now + 120_000, now: () => clock.now, avoid: { has: h => noticed.has(h) } })
  t.same(c.moves, ['a->aws2 auto', 'b->lab1 auto', 'c->lab1 auto'], 'b and c, without wires, to the other site; not to aws2 any more')
  t.same(r.moved.map(m => m.to), ['aws2', 'lab1', 'lab1'])
})
