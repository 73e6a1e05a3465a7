/**
 * Reconcile (`up`) with an in-memory cloud and agents (test/unit/controller/mem.ts): the real
 * planner, state store and controller parts; only the hosts are in memory.
 */
import t from 'tap'
import { AgentError } from '../../../core/errors.ts'
import { Bench, twoHosts } from './mem.ts'

t.test('up creates hosts and guests, and a second up has nothing to do', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const spec = twoHosts({ a: { host: 'h1' }, b: { host: 'h2' } })
  const c = b.controller()
  const r = await c.up(spec)
  t.ok(r.applied > 0)
  t.same(b.cloud.host('h1').running(), ['a'])
  t.same(b.cloud.host('h2').running(), ['b'])
  t.same(c.store.vms().map(v => [v.name, v.host, v.status]), [['a', 'h1', 'ready'], ['b', 'h2', 'ready']])
  t.same((await c.plan(spec)).actions, [], 'converged')
})

t.test('the agent dies while it creates a guest: that guest is recorded failed, the next up converges, nothing else is destroyed', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const c1 = b.controller()
  await c1.up(twoHosts({ a: { host: 'h1' }, b: { host: 'h2' } }))
  c1.close()
  const h1 = b.cloud.host('h1')
  const h2 = b.cloud.host('h2')

  // A new VM on h1; h1's agent dies during its vm.create.
  const spec = twoHosts({ a: { host: 'h1' }, b: { host: 'h2' }, c: { host: 'h1' } })
  h1.faults.dieOnCreate = 'c'
  const c2 = b.controller()
  const err = await c2.up(spec).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof AgentError, 'the agent failure is the error')
  t.equal((err as AgentError).code, 'SC_AGENT_GONE')
  const failed = c2.store.vm('c')
  t.equal(failed?.status, 'failed', 'the half-made guest is recorded failed')
  t.match(failed?.error, /connection closed/)
  t.equal(c2.store.vm('a')?.status, 'ready')
  t.equal(c2.store.vm('b')?.status, 'ready')
  t.same(h1.running(), ['a'], 'a still runs on h1')
  t.same(h2.running(), ['b'])
  c2.close()

  // The next `up` (a new process, a new connection to the restarted agent) finishes the job.
  const c3 = b.controller()
  const r = await c3.up(spec)
  t.same(r.plan.filter(l => !/^[+~] vm c /.test(l)), [], 'only c is (re)started')
  t.equal(c3.store.vm('c')?.status, 'ready')
  t.same(h1.running(), ['a', 'c'])
  t.same(h2.running(), ['b'])
  t.same((await c3.plan(spec)).actions, [], 'converged')

  // Nothing else was destroyed or re-created along the way.
  const all = [...h1.calls, ...h2.calls]
  t.same(all.filter(x => x.startsWith('destroyVm')), [], 'no guest destroyed')
  t.same(all.filter(x => x.startsWith('createVm')).sort(), ['createVm a', 'createVm b', 'createVm c', 'createVm c'], 'a and b created once')
  t.same(b.cloud.calls.filter(x => x.startsWith('destroyHost')), [], 'no host destroyed')
  t.same(b.cloud.calls.filter(x => x.startsWith('createHost')), ['createHost h1', 'createHost h2'], 'hosts created once')
})

t.test('a VM removed from the spec is destroyed on its host, the others stay', async t => {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const c = b.controller()
  await c.up(twoHosts({ a: { host: 'h1' }, b: { host: 'h2' } }))
  await c.up(twoHosts({ a: { host: 'h1' } }))
  t.same(b.cloud.host('h2').calls.filter(x => x.startsWith('destroyVm')), ['destroyVm b'])
  t.same(b.cloud.host('h1').calls.filter(x => x.startsWith('destroyVm')), [])
  t.same(c.store.vms().map(v => v.name), ['a'])
  t.same(b.cloud.host('h1').running(), ['a'])
})
