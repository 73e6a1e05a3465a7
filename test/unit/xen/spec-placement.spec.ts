/**
 * `hypervisor: { backend: xen }` in the spec and in placement: what a Xen host accepts, and
 * the errors a user sees (file, line, field) when a spec asks for what Xen hosts cannot do.
 */
import t from 'tap'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { CapacityError, type SpecIssue } from '../../../core/errors.ts'
import { place, xenMigrationUnsupported, xenUnsupported } from '../../../blanket-manager/planner/placement.ts'
import { host, spec, vm } from '../planner/fixtures.ts'
import { specIssues } from '../specfile/issues.ts'

const issuesOf = (text: string): SpecIssue[] => specIssues(text, '/specs/x.yaml')

const xenHost = (name: string, site = 'a', memMiB = 1024): ReturnType<typeof host> => ({ ...host(name, site, memMiB), hypervisor: { backend: 'xen', accel: 'auto' } })

t.test('a local host with backend xen parses; accel stays auto', async t => {
  const s = parseSpec(`sites:
  x: { subnet: 198.18.61.0/24 }
hosts:
  xen-a: { site: x, hypervisor: { backend: xen } }
  q1: { site: x }
`, '/specs/x.yaml')
  t.same(s.hosts['xen-a']?.hypervisor, { backend: 'xen', accel: 'auto' })
  t.same(s.hosts.q1?.hypervisor, { backend: 'qemu', accel: 'auto' })
})

t.test('accel with backend xen, an unknown backend, and xen on ec2 are errors naming line and field', async t => {
  const accel = issuesOf(`sites:
  x: { subnet: 198.18.61.0/24 }
hosts:
  xen-a: { site: x, hypervisor: { backend: xen, accel: kvm } }
`)
  t.equal(accel.length, 1)
  t.equal(accel[0]?.line, 4)
  t.equal(accel[0]?.field, 'hosts.xen-a.hypervisor.accel')
  t.match(accel[0]?.message, /accel is for the qemu backend/)
  const unknown = issuesOf(`sites:
  x: { subnet: 198.18.61.0/24 }
hosts:
  h: { site: x, hypervisor: { backend: kvmtool } }
`)
  t.equal(unknown[0]?.field, 'hosts.h.hypervisor.backend')
  t.match(unknown[0]?.message, /qemu|xen/)
  const ec2 = issuesOf(`sites:
  aws: {}
hosts:
  aws1:
    site: aws
    driver: ec2
    hypervisor: { backend: xen }
    ec2: { region: eu-west-1, ami: ami-0123456789abcdef0, instanceType: m5.large }
`)
  t.equal(ec2.length, 1)
  t.equal(ec2[0]?.field, 'hosts.aws1.hypervisor.backend')
  t.match(ec2[0]?.message, /Nitro \(KVM\) guest without nested virtualization/)
})

t.test('what a Xen host cannot run (qcow2 images) and what cannot migrate between Xen hosts (disks, swap)', async t => {
  const s = spec([xenHost('x1')], [])
  s.images.deb = { name: 'deb', kind: 'qcow2', path: '/img/deb.qcow2' }
  const disk = vm('d', { disks: [{ name: 'data', sizeBytes: 1 << 26 }] })
  const swap = { ...vm('d'), swapBytes: 1 << 26 }
  t.equal(xenUnsupported(s, vm('ok')), undefined, 'a kernel-image guest with NICs runs on Xen')
  t.match(xenUnsupported(s, vm('d', { image: 'deb' })), /^vms\.d\.image: 'deb' is a qcow2 disk image/)
  t.equal(xenUnsupported(s, disk), undefined, 'a data disk runs on Xen (raw image through blkback)')
  t.equal(xenUnsupported(s, swap), undefined, 'a swap disk runs on Xen (NBD device in the dom0)')
  t.equal(xenMigrationUnsupported(s, vm('ok')), undefined, 'a kernel-image guest with NICs migrates')
  t.match(xenMigrationUnsupported(s, vm('d', { image: 'deb' })), /^vms\.d\.image: /)
  t.match(xenMigrationUnsupported(s, disk), /^vms\.d\.disks: a VM with disks does not migrate between Xen hosts/)
  t.match(xenMigrationUnsupported(s, swap), /^vms\.d\.swap: /)
})

t.test('placement: a qcow2-image VM pinned to a Xen host is refused; unpinned, it goes to a QEMU host; disks are fine', async t => {
  const withDeb = (sp: ReturnType<typeof spec>): ReturnType<typeof spec> => { sp.images.deb = { name: 'deb', kind: 'qcow2', path: '/img/deb.qcow2' }; return sp }
  const disk = [{ name: 'data', sizeBytes: 1 << 26 }]
  t.throws(() => place(withDeb(spec([xenHost('x1'), host('q1', 'a')], [vm('db1', { host: 'x1', image: 'deb' })]))), CapacityError)
  t.throws(() => place(withDeb(spec([xenHost('x1')], [vm('db1', { host: 'x1', image: 'deb' })]))), /vms\.db1\.image: .*\(host x1 runs Xen\)/)
  // x1 sorts first and has room, but cannot run it: first fit skips it.
  t.same(place(withDeb(spec([xenHost('x1'), host('y1', 'a')], [vm('db1', { image: 'deb' }), vm('web1')]))), { db1: 'y1', web1: 'x1' })
  t.throws(() => place(withDeb(spec([xenHost('x1')], [vm('db1', { image: 'deb' })]))), /vms\.db1: no host .*Xen hosts cannot: vms\.db1\.image/)
  t.same(place(spec([xenHost('x1')], [vm('db1', { host: 'x1', disks: disk }), { ...vm('sw1'), swapBytes: 1 << 26 }])), { db1: 'x1', sw1: 'x1' }, 'disks and swap place on Xen')
})

t.test('examples/xen.yaml: two Xen hosts, its guests placed as written, one wire', async t => {
  const { loadSpec } = await import('../../../blanket-manager/specfile/load.ts')
  const s = await loadSpec(new URL('../../../examples/xen.yaml', import.meta.url).pathname)
  t.same(Object.values(s.hosts).map(h => [h.name, h.hypervisor.backend]), [['xen-a', 'xen'], ['xen-b', 'xen']])
  t.same(place(s), { web1: 'xen-a', app1: 'xen-a', db1: 'xen-b' })
  t.equal(s.network.wires.length, 1)
})
