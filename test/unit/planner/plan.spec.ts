import t from 'tap'
import { plan } from '../../../blanket-manager/planner/plan.ts'
import { describePlan } from '../../../blanket-manager/planner/changes.ts'
import { applied, empty, host, spec, vm } from './fixtures.ts'

const base = spec([host('h1', 'a'), host('h2', 'b')], [vm('web1', { host: 'h1' }), vm('db1', { host: 'h2' })])

t.test('from nothing: network, hosts, then VMs', async t => {
  const p = plan(base, empty, 'scx')
  t.same(p.actions.map(a => a.kind), ['network.create', 'host.create', 'host.create', 'vm.create', 'vm.create'])
  t.match(describePlan(p)[0], /^\+ network local/)
})

t.test('an unchanged spec on a healthy supercloud plans nothing', async t => {
  const st = applied(base)
  t.same(plan(base, st, 'scx').actions, [])
  t.same(plan(base, st, 'scx', { hosts: { h1: 'running', h2: 'running' }, vms: { web1: 'running', db1: 'running' } }).actions, [])
})

t.test('interrupted creation is finished, not duplicated', async t => {
  const st = applied(base)
  st.hosts[0] = { ...st.hosts[0]!, status: 'creating', bootstrapped: false }
  const db1 = st.vms.findIndex(v => v.name === 'db1')
  st.vms[db1] = { ...st.vms[db1]!, status: 'creating' }
  const p = plan(base, st, 'scx')
  t.same(p.actions.map(a => `${a.kind}:${'host' in a && typeof a.host === 'object' ? a.host.name : 'vm' in a ? a.vm.spec.name : ''}`),
    ['host.create:h1', 'vm.create:db1', 'vm.create:web1'], 'h1 is finished; db1 is finished; web1 on h1 is re-ensured')
  t.match(describePlan(p).join('\n'), /finishing interrupted creation/)
})

t.test('removed VM and host are deleted, VMs before hosts', async t => {
  const st = applied(base)
  const smaller = spec([host('h1', 'a')], [vm('web1', { host: 'h1' })])
  const p = plan(smaller, st, 'scx')
  t.same(p.actions.map(a => a.kind), ['vm.delete', 'host.delete'])
})

t.test('changing allocated memory balloons in place; requested memory up in 128 MiB steps is hot-plugged, other steps restart the guest on its disks', async t => {
  const st = applied(base)
  const ballooned = spec([host('h1', 'a'), host('h2', 'b')], [vm('web1', { host: 'h1', mem: 128, alloc: 64 }), vm('db1', { host: 'h2' })])
  t.same(plan(ballooned, st, 'scx').actions.map(a => a.kind), ['vm.balloon'])
  const bigger = spec([host('h1', 'a'), host('h2', 'b')], [vm('web1', { host: 'h1', mem: 256 }), vm('db1', { host: 'h2' })])
  t.same(plan(bigger, st, 'scx').actions.map(a => a.kind), ['vm.update'])
  const odd = spec([host('h1', 'a'), host('h2', 'b')], [vm('web1', { host: 'h1', mem: 200 }), vm('db1', { host: 'h2' })])
  t.same(plan(odd, st, 'scx').actions.map(a => a.kind), ['vm.restart'])
})

t.test('observed drift is repaired: dead VM started again on its disks, vanished host recreated with its VMs', async t => {
  const st = applied(base)
  const p1 = plan(base, st, 'scx', { hosts: { h1: 'running', h2: 'running' }, vms: { web1: 'absent', db1: 'running' } })
  t.same(p1.actions.map(a => a.kind), ['vm.restart'])
  t.match(describePlan(p1)[0], /VM is absent: restarting/)
  const p2 = plan(base, st, 'scx', { hosts: { h1: 'gone', h2: 'running' }, vms: { db1: 'running' } })
  t.same(p2.actions.map(a => a.kind), ['host.create', 'vm.create'])
})

t.test('WAN change re-ensures the network only', async t => {
  const st = applied(base)
  const s2 = { ...base, wan: { delayMs: 5, bandwidthBps: 200e6 } }
  t.same(plan(s2, st, 'scx').actions.map(a => a.kind), ['network.create'])
})

t.test('last local host gone removes the network', async t => {
  const st = applied(base)
  const none = spec([], [])
  t.same(plan(none, st, 'scx').actions.map(a => a.kind), ['vm.delete', 'vm.delete', 'host.delete', 'host.delete', 'network.delete'])
})

t.test('a VM being migrated is left alone by up', async t => {
  const st = applied(base)
  const i = st.vms.findIndex(v => v.name === 'web1')
  st.vms[i] = { ...st.vms[i]!, status: 'migrating', host: 'h2' }
  t.same(plan(base, st, 'scx').actions, [])
})

t.test('hosts whose agent is another build are re-bootstrapped, their VMs untouched', async t => {
  const st = applied(base)
  const p = plan(base, st, 'scx', { hosts: { h1: 'running', h2: 'running' }, vms: { web1: 'running', db1: 'running' }, agentBuilds: { h1: 'old', h2: 'new' }, wantedAgentBuild: 'new' })
  t.same(p.actions.map(a => a.kind), ['host.create'])
  t.match(describePlan(p)[0], /host h1 .*upgrading host agent old -> new/)
})

t.test('an agent upgrade on a Xen host with swap-disk guests is held back and said why; without them it goes ahead', async t => {
  const xen = (h: ReturnType<typeof host>): ReturnType<typeof host> => ({ ...h, hypervisor: { backend: 'xen' } as ReturnType<typeof host>['hypervisor'] })
  const s = spec([xen(host('x1', 'a')), host('h2', 'b')], [{ ...vm('web1', { host: 'x1' }), swapBytes: 64 * 1024 * 1024 }, vm('app1', { host: 'x1' }), { ...vm('db1', { host: 'h2' }), swapBytes: 64 * 1024 * 1024 }])
  const obs = { hosts: { x1: 'running' as const, h2: 'running' as const }, vms: { web1: 'running' as const, app1: 'running' as const, db1: 'running' as const }, agentBuilds: { x1: 'old', h2: 'old' }, wantedAgentBuild: 'new' }
  const p = plan(s, applied(s), 'scx', obs)
  t.same(p.actions.map(a => a.kind === 'host.create' ? a.host.name : a.kind), ['h2'], 'the QEMU host upgrades (QEMU reconnects to the swap export); the Xen host does not')
  t.same(p.held, ['host x1: agent upgrade old -> new held back: an agent restart would break the swap disks of web1 on this Xen host (docs/xen.md); remove or move them first'])
  t.match(describePlan(p).at(-1), /^! host x1: agent upgrade old -> new held back/)
  const noSwap = spec([xen(host('x1', 'a'))], [vm('app1', { host: 'x1' })])
  const q = plan(noSwap, applied(noSwap), 'scx', { ...obs, vms: { app1: 'running' as const }, agentBuilds: { x1: 'old' } })
  t.same(q.actions.map(a => a.kind), ['host.create'], 'a Xen host without swap-disk guests upgrades')
  t.equal(q.held, undefined)
})
