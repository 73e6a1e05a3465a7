/**
 * The plan's classification of every kind of spec change (issue 15): create / update (restart on
 * the existing disks) / move (live migration) / replace / delete, and what a replace or delete
 * destroys. The planner is pure: state as `up` leaves it (fixtures.applied) plus an edited spec.
 */
import t from 'tap'
import { plan, type Observation, type Plan } from '../../../blanket-manager/planner/plan.ts'
import { describePlan } from '../../../blanket-manager/planner/changes.ts'
import { dataLoss } from '../../../blanket-manager/planner/changes.ts'
import type { HostSpec, Spec, VmSpec } from '../../../core/spec.ts'
import { applied, host, spec, vm } from './fixtures.ts'

const M = 1024 * 1024
const data = (mib = 64): VmSpec['disks'] => [{ name: 'data', sizeBytes: mib * M }]
const hosts = [host('h1', 'a'), host('h2', 'a'), host('h3', 'b')]
const base = spec(hosts, [vm('web1', { host: 'h1' }), vm('db1', { host: 'h1', disks: data() })])
const st = applied(base)
const healthy: Observation = { hosts: { h1: 'running', h2: 'running', h3: 'running' }, vms: { web1: 'running', db1: 'running' } }

/** `base` with db1 edited. */
function withDb1 (edit: Partial<VmSpec>, s: Spec = base): Spec {
  return { ...s, vms: { ...s.vms, db1: { ...(s.vms.db1 as VmSpec), ...edit } } }
}

const ops = (p: Plan): string[] => p.changes.map(c => `${c.op} ${c.subject}`)
const kinds = (p: Plan): string[] => p.actions.map(a => a.kind)

t.test('a new VM is a create; it takes a free address, the others keep theirs', async t => {
  const p = plan({ ...base, vms: { ...base.vms, app1: vm('app1', { host: 'h2' }) } }, st, 'scx', healthy)
  t.same(ops(p), ['create vm app1'], 'app1 sorts first but does not renumber db1 and web1')
  t.match(describePlan(p)[0], /^\+ vm app1 on h2 \[198\.18\.1\.\d+\/24\]  \(new VM\)$/)
  t.same(dataLoss(p.changes), [])
})

t.test('cpus up, memory up in 128 MiB steps, a disk or NIC added: a live update in place (hot-plug), no restart, nothing lost', async t => {
  const cases: Array<[Partial<VmSpec>, RegExp]> = [
    [{ cpus: 2 }, /^~ vm db1 on h1  \(cpus 1 -> 2: live, no reboot\)$/],
    [{ memory: { requestedBytes: 384 * M, allocatedBytes: 384 * M } }, /^~ vm db1 on h1  \(memory 128 MiB -> 384 MiB: live, no reboot\)$/],
    [{ disks: [...data(), { name: 'logs', sizeBytes: 16 * M }] }, /^~ vm db1 on h1  \(disk logs \(16 MiB\) added: live, no reboot\)$/],
    [{ nics: [{ name: 'eth0' }, { name: 'eth1' }] }, /^~ vm db1 on h1  \(NIC eth1 198\.18\.1\.\d+\/24 added: live, no reboot\)$/],
    [{ cpus: 2, memory: { requestedBytes: 256 * M, allocatedBytes: 256 * M } }, /\(cpus 1 -> 2, memory 128 MiB -> 256 MiB: live, no reboot\)$/]
  ]
  for (const [edit, line] of cases) {
    const p = plan(withDb1(edit), st, 'scx', healthy)
    t.same(kinds(p), ['vm.update'], line.source)
    t.same(p.changes.map(c => [c.op, c.restart ?? false]), [['update', false]])
    t.match(describePlan(p)[0], line)
    t.same(dataLoss(p.changes), [])
  }
})

t.test('what cannot be live is a restart on its disks that says why', async t => {
  const big = { ...base, hosts: { ...base.hosts, h1: host('h1', 'a', 1024, 16) } }
  const two = withDb1({ cpus: 2, memory: { requestedBytes: 256 * M, allocatedBytes: 256 * M } })
  const xen = { ...base, hosts: { ...base.hosts, h1: { ...host('h1', 'a'), hypervisor: { backend: 'xen' as const, accel: 'tcg' as const } } } }
  const cases: Array<[Spec, Partial<VmSpec>, RegExp]> = [
    [big, { cpus: 9 }, /^cpus 1 -> 9: restart on its disks \(not live: cpus 1 -> 9: over the 8 vCPUs the guest was launched with room for\)$/],
    [base, { memory: { requestedBytes: 200 * M, allocatedBytes: 200 * M } }, /not live: .*grows live only in steps of 128 MiB/],
    [base, { cpus: 2, gateway: '198.18.1.254' }, /^cpus 1 -> 2: restart on its disks \(not live: other settings changed too\)$/],
    [two, { cpus: 1 }, /^cpus 2 -> 1: restart on its disks \(not live: cpus 2 -> 1: vCPUs are not unplugged live\)$/],
    [two, { cpus: 2, memory: { requestedBytes: 128 * M, allocatedBytes: 128 * M } }, /not live: memory 256 MiB -> 128 MiB: memory is not unplugged live \(lower `allocated` to shrink it through the balloon\)/],
    [xen, { cpus: 2 }, /^cpus 1 -> 2: restart on its disks \(not live: xen host changes no running guest here/]
  ]
  for (const [before, edit, why] of cases) {
    const p = plan(withDb1(edit, before), applied(before), 'scx', healthy)
    t.same(kinds(p), ['vm.restart'], why.source)
    t.match(p.changes[0]?.reason, why)
    t.same(dataLoss(p.changes), [])
  }
})

t.test('memory grows live only on a KVM host: under TCG (or a mode not known) it is a restart that says why; vCPUs stay live', async t => {
  for (const accel of ['tcg', undefined]) {
    const st1 = { ...st, hosts: st.hosts.map(h => ({ ...h, accel })) }
    const mem = plan(withDb1({ memory: { requestedBytes: 256 * M, allocatedBytes: 256 * M } }), st1, 'scx', healthy)
    t.same(kinds(mem), ['vm.restart'], `accel ${String(accel)}: memory up restarts`)
    t.match(mem.changes[0]?.reason, /not live: memory is hot-plugged live only under KVM \(this host runs (tcg|an unknown mode): QEMU 7\.2 under TCG could lose writes/)
    t.same(dataLoss(mem.changes), [])
    t.same(kinds(plan(withDb1({ cpus: 2 }), st1, 'scx', healthy)), ['vm.update'], `accel ${String(accel)}: a vCPU is still hot-plugged`)
  }
})

t.test('a disk that was hot-plugged is unplugged live when removed: an update that names the disk lost', async t => {
  const grown = withDb1({ disks: [...data(), { name: 'logs', sizeBytes: 16 * M }] })
  const st1 = applied(grown)
  const db1 = st1.vms.find(v => v.name === 'db1')
  if (db1?.record !== undefined) db1.record.plugged = { bootCpus: 1, bootMemoryBytes: 128 * M, dimmBytes: [], ports: { 'disk-logs': 0 } }
  const p = plan(base, st1, 'scx', healthy)
  t.same(kinds(p), ['vm.update'])
  t.match(describePlan(p)[0], /^~ vm db1 on h1  \(disk logs removed: live, no reboot\)  DATA LOSS: disk logs \(16 MiB\) of db1$/)
  const cold = plan(base, applied(grown), 'scx', healthy)
  t.same(kinds(cold), ['vm.delete', 'vm.create'], 'a disk plugged at boot: a replace (q35 unplugs nothing from its root bus)')
})

t.test('allocated memory alone: an update in place (balloon), no restart', async t => {
  const p = plan(withDb1({ memory: { requestedBytes: 128 * M, allocatedBytes: 64 * M } }), st, 'scx', healthy)
  t.same(kinds(p), ['vm.balloon'])
  t.same(p.changes.map(c => [c.op, c.restart ?? false]), [['update', false]])
})

t.test('a disk grown: a restart that keeps the existing disk', async t => {
  const grown = plan(withDb1({ disks: data(128) }), st, 'scx', healthy)
  t.same(kinds(grown), ['vm.restart'])
  t.match(grown.changes[0]?.reason, /^disk data grows 64 MiB -> 128 MiB: restart on its disks$/)
  t.same(dataLoss(grown.changes), [])
})

t.test('gateway or firewall (boot settings): a restart', async t => {
  const p = plan(withDb1({ gateway: '198.18.1.254' }), st, 'scx', healthy)
  t.same(kinds(p), ['vm.restart'])
  t.match(p.changes[0]?.reason, /boot settings changed/)
})

t.test('a changed host: a move by live migration, nothing lost', async t => {
  const p = plan(withDb1({ host: 'h2' }), st, 'scx', healthy)
  t.same(kinds(p), ['vm.move'])
  t.same(ops(p), ['move vm db1'])
  t.match(describePlan(p)[0], /^> vm db1 h1 -> h2  \(host changed: live migration with its disks\)$/)
  t.same(dataLoss(p.changes), [])
  const move = p.actions[0]
  t.ok(move?.kind === 'vm.move' && move.from === 'h1' && move.to === 'h2')
})

t.test('a changed host and cpus: the move (as it runs now), then a restart on the new host', async t => {
  const p = plan(withDb1({ host: 'h2', cpus: 2 }), st, 'scx', healthy)
  t.same(kinds(p), ['vm.move', 'vm.restart'])
  const move = p.actions[0]
  t.equal(move?.kind === 'vm.move' ? move.running.cpus : 0, 1, 'the migration launches it with the CPUs it has')
  t.same(ops(p), ['move vm db1', 'update vm db1'])
})

t.test('what cannot keep the disk is a replace that names the disk lost', async t => {
  const cases: Array<[string, Partial<VmSpec>, RegExp]> = [
    ['image', { image: 'other' }, /image tiny -> other/],
    ['NIC address', { nics: [{ name: 'eth0', address: '198.18.1.77/24' }] }, /NICs changed/],
    ['NIC removed', { nics: [] }, /NICs changed/],
    ['disk removed', { disks: [] }, /disk data removed/],
    ['disk shrunk', { disks: data(32) }, /disk data shrinks 64 MiB -> 32 MiB/]
  ]
  const s0 = { ...base, images: { ...base.images, other: { name: 'other', kind: 'builtin' as const, builtin: 'tiny' as const } } }
  for (const [what, edit, why] of cases) {
    const p = plan(withDb1(edit, s0), st, 'scx', healthy)
    t.same(kinds(p), ['vm.delete', 'vm.create'], what)
    t.same(ops(p), ['replace vm db1'], what)
    t.match(p.changes[0]?.reason, why, what)
    t.same(p.changes[0]?.destroysData, ['disk data (64 MiB) of db1'], `${what}: names the disk and its size`)
    t.match(describePlan(p)[0], /^-\/\+ vm db1 on h1 .*DATA LOSS: disk data \(64 MiB\) of db1$/, what)
  }
})

t.test('a replace of a VM without disks loses nothing', async t => {
  const p = plan({ ...base, vms: { ...base.vms, web1: { ...(base.vms.web1 as VmSpec), nics: [{ name: 'eth0', address: '198.18.1.99/24' }] } } }, st, 'scx', healthy)
  t.same(ops(p), ['replace vm web1'])
  t.same(dataLoss(p.changes), [])
})

t.test('a qcow2 VM\'s root disk counts as data', async t => {
  const q = { ...base, images: { ...base.images, deb: { name: 'deb', kind: 'qcow2' as const, path: '/img/deb.qcow2' } } }
  const s = withDb1({ image: 'deb' }, q)
  const p = plan({ ...s, vms: { web1: s.vms.web1 as VmSpec } }, applied(s), 'scx')
  t.same(p.changes.map(c => [c.op, c.subject, c.destroysData]), [['delete', 'vm db1', ['root disk of db1 (writes on top of image deb)', 'disk data (64 MiB) of db1']]])
})

t.test('--replace vm/NAME forces a replace, which counts as data loss', async t => {
  const p = plan(base, st, 'scx', healthy, [], { replace: ['db1'] })
  t.same(ops(p), ['replace vm db1'])
  t.same(dataLoss(p.changes), ['disk data (64 MiB) of db1'])
})

t.test('a VM removed from the spec: a delete, with its disk named', async t => {
  const p = plan({ ...base, vms: { web1: base.vms.web1 as VmSpec } }, st, 'scx', healthy)
  t.same(ops(p), ['delete vm db1'])
  t.match(describePlan(p)[0], /^- vm db1 on h1  \(not in spec\)  DATA LOSS: disk data \(64 MiB\) of db1$/)
  t.match(describePlan(p, true)[0], /^\x1b\[31m- vm db1 .*\x1b\[0m$/, 'in red on a terminal')
})

t.test('a VM found stopped or gone is started again on its disks (cold boot), not re-created', async t => {
  for (const run of ['shutdown', 'absent', 'other']) {
    const p = plan(base, st, 'scx', { ...healthy, vms: { web1: 'running', db1: run } })
    t.same(kinds(p), ['vm.restart'], run)
    t.match(describePlan(p)[0], new RegExp(`^~ vm db1 on h1  \\(VM is ${run}: restarting on its disks\\)$`))
    t.same(dataLoss(p.changes), [])
  }
})

t.test('an unreachable host is left alone unless --repair, which replaces it and says what is lost', async t => {
  const obs: Observation = { hosts: { h1: 'unreachable', h2: 'running', h3: 'running' }, vms: {} }
  const p = plan(withDb1({ cpus: 2 }), st, 'scx', obs)
  t.same(p.actions, [], 'nothing is done')
  t.match(p.held?.[0], /^host h1 is unreachable: left alone with its guests; `up --repair` re-creates it, losing vm db1 on host h1: disk data \(64 MiB\) of db1; vm web1 on host h1$/)
  t.match(p.held?.[1], /vm db1: left alone \(host h1 is unreachable/)
  const r = plan(base, st, 'scx', obs, [], { repair: true })
  t.same(kinds(r), ['host.create', 'vm.create', 'vm.create'])
  t.same(ops(r), ['replace host h1', 'replace vm db1', 'replace vm web1'])
  t.same(r.changes[0]?.destroysData, ['vm db1 on host h1: disk data (64 MiB) of db1', 'vm web1 on host h1'])
  t.same(r.changes[1]?.destroysData, ['disk data (64 MiB) of db1'])
})

t.test('a host that is gone is re-created with its guests: their data went with it, the plan destroys none', async t => {
  const p = plan(base, st, 'scx', { hosts: { h1: 'gone', h2: 'running', h3: 'running' }, vms: {} })
  t.same(kinds(p), ['host.create', 'vm.create', 'vm.create'])
  t.same(ops(p), ['replace host h1', 'replace vm db1', 'replace vm web1'])
  t.same(dataLoss(p.changes), [])
  t.match(describePlan(p)[0], /host is gone: repairing/)
})

t.test('a host whose spec changed is replaced: its VMs are named as lost', async t => {
  const s = { ...base, hosts: { ...base.hosts, h1: { ...host('h1', 'a'), cpus: 4 } } }
  const p = plan(s, st, 'scx', healthy)
  t.same(kinds(p), ['host.delete', 'host.create', 'vm.create', 'vm.create'])
  t.same(ops(p), ['replace host h1', 'replace vm db1', 'replace vm web1'])
  t.same(p.changes[0]?.destroysData, ['vm db1 on host h1: disk data (64 MiB) of db1', 'vm web1 on host h1'])
})

t.test('a host removed while its VMs move elsewhere: moves first, the host delete loses nothing', async t => {
  const s = spec([host('h2', 'a'), host('h3', 'b')], [vm('web1', { host: 'h2' }), vm('db1', { host: 'h2', disks: data() })])
  const p = plan(s, st, 'scx', healthy)
  t.same(kinds(p), ['host.delete', 'vm.move', 'vm.move'])
  t.same(ops(p), ['move vm db1', 'move vm web1', 'delete host h1'])
  t.same(dataLoss(p.changes), [])
})

t.test('a host removed with its VMs: the host delete names them', async t => {
  const s = spec([host('h2', 'a'), host('h3', 'b')], [])
  const p = plan(s, st, 'scx', healthy)
  t.same(ops(p), ['delete vm db1', 'delete vm web1', 'delete host h1'])
  t.same(p.changes[2]?.destroysData, ['vm db1 on host h1: disk data (64 MiB) of db1', 'vm web1 on host h1'])
})

t.test('a changed host in another site renumbers an allocated address: a replace, said so', async t => {
  const p = plan(withDb1({ host: 'h3' }), st, 'scx', healthy)
  t.same(ops(p), ['replace vm db1'])
  t.match(p.changes[0]?.reason, /NICs changed/)
  t.same(dataLoss(p.changes), ['disk data (64 MiB) of db1'])
})

t.test('a move across hypervisors cannot migrate: a replace', async t => {
  const xen = { ...host('x1', 'a'), hypervisor: { backend: 'xen' as const, accel: 'tcg' as const } }
  const s = spec([...hosts, xen], [vm('web1', { host: 'h1' }), vm('db1', { host: 'h1', disks: data() })])
  const p = plan(withDb1({ host: 'x1' }, s), applied(s), 'scx', healthy)
  t.same(ops(p), ['replace vm db1'])
  t.match(p.changes[0]?.reason, /across hypervisors/)
})
