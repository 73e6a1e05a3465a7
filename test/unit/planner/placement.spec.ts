import t from 'tap'
import { place, resolveVms, macFor, tapFor, siteGateway } from '../../../blanket-manager/planner/placement.ts'
import { CapacityError } from '../../../core/errors.ts'
import { host, spec, vm } from './fixtures.ts'

t.test('explicit placement is kept and unplaced VMs go first-fit-decreasing', async t => {
  const s = spec([host('h1', 'a', 512), host('h2', 'a', 1024)], [
    vm('pinned', { host: 'h2', mem: 256 }),
    vm('big', { mem: 400 }),
    vm('small', { mem: 100 }),
    vm('mid', { mem: 300 })
  ])
  const p = place(s)
  t.equal(p.pinned, 'h2')
  // big (400) fits h1 (512), mid (300) no longer fits h1 (112 left) -> h2, small (100) fits h1.
  t.same(p, { pinned: 'h2', big: 'h1', mid: 'h2', small: 'h1' })
})

t.test('a VM that does not fit on its host is refused with the numbers', async t => {
  const s = spec([host('h1', 'a', 256)], [vm('web1', { host: 'h1', mem: 200 }), vm('db1', { host: 'h1', mem: 100 })])
  const err = t.throws(() => place(s)) as unknown as CapacityError
  t.ok(err instanceof CapacityError)
  t.equal(err.code, 'SC_CAPACITY')
  t.match(err.message, /vms\.db1: needs 100M of memory but host h1 has 56M left of 256M \(already placed: web1\)/)
})

t.test('too many vCPUs and nowhere to go', async t => {
  t.throws(() => place(spec([host('h1', 'a', 1024, 1)], [vm('x', { host: 'h1', cpus: 2 })])), /needs 2 vCPUs but host h1 offers 1/)
  t.throws(() => place(spec([host('h1', 'a', 100)], [vm('x', { mem: 200 })])), /no host has 200M of memory and 1 vCPUs free/)
})

t.test('placement uses allocated, not requested, memory (oversubscription)', async t => {
  const s = spec([host('h1', 'a', 512)], [vm('a1', { mem: 1024, alloc: 256 }), vm('a2', { mem: 1024, alloc: 256 })])
  t.same(place(s), { a1: 'h1', a2: 'h1' })
})

t.test('addresses are allocated from the site subnet, skipping taken ones', async t => {
  const s = spec([host('h1', 'a'), host('h2', 'b')], [
    vm('web1', { host: 'h1', nics: [{ name: 'eth0', address: '198.18.1.100/24' }] }),
    vm('web2', { host: 'h1' }),
    vm('db1', { host: 'h2', nics: [{ name: 'eth0' }, { name: 'eth1' }] })
  ])
  const r = resolveVms(s, 'sc1234')
  t.equal(r.web1?.nics[0]?.address, '198.18.1.100/24')
  t.equal(r.web2?.nics[0]?.address, '198.18.1.101/24')
  t.same(r.db1?.nics.map(n => n.address), ['198.18.2.100/24', '198.18.2.101/24'])
  t.equal(r.db1?.gateway, '198.18.2.1')
  const taps = Object.values(r).flatMap(v => v.nics.map(n => n.tap))
  t.equal(new Set(taps).size, taps.length, 'TAP names are unique')
  for (const tap of taps) t.ok(tap.length <= 15 && tap.startsWith('sc1234'), `${tap} fits and carries the prefix`)
})

t.test('new addresses fill the holes left by kept and explicit ones, lowest first, per subnet', async t => {
  // Allocation resumes where the last one stopped (not from .100 each time): the result must be the same as a scan from .100.
  const s = spec([host('h1', 'a'), host('h2', 'b')], [
    vm('a', { host: 'h1' }), vm('b', { host: 'h1' }), vm('c', { host: 'h1' }), vm('d', { host: 'h1' }),
    vm('e', { host: 'h1' }), vm('f', { host: 'h1' }), vm('g', { host: 'h1' }), vm('x', { host: 'h2' }),
    vm('zz', { host: 'h1', nics: [{ name: 'eth0', address: '198.18.1.106/24' }] })
  ])
  const kept = { a: [{ name: 'eth0', address: '198.18.1.100/24' }], c: [{ name: 'eth0', address: '198.18.1.102/24' }], e: [{ name: 'eth0', address: '198.18.1.104/24' }] }
  const r = resolveVms(s, 'sc1234', kept)
  t.same(Object.fromEntries(Object.values(r).map(v => [v.spec.name, v.nics[0]?.address])), {
    a: '198.18.1.100/24', b: '198.18.1.101/24', c: '198.18.1.102/24', d: '198.18.1.103/24',
    e: '198.18.1.104/24', f: '198.18.1.105/24', g: '198.18.1.107/24', x: '198.18.2.100/24', zz: '198.18.1.106/24'
  })
})

t.test('resolution is deterministic', async t => {
  const s = spec([host('h1', 'a')], [vm('a'), vm('b')])
  t.same(resolveVms(s, 'scx'), resolveVms(s, 'scx'))
  t.equal(macFor('sc', 'vm', 'eth0'), macFor('sc', 'vm', 'eth0'))
  t.not(macFor('sc', 'vm', 'eth0'), macFor('sc', 'vm', 'eth1'))
  t.match(macFor('sc', 'vm', 'eth0'), /^52:54(:[0-9a-f]{2}){4}$/)
  t.not(tapFor('p', 'a', 'eth0'), tapFor('p', 'b', 'eth0'))
})

t.test('site gateway', async t => {
  t.equal(siteGateway(spec([], []), 'a'), '198.18.1.1')
  t.equal(siteGateway(spec([], []), 'nope'), undefined)
})

t.test('a migrated VM stays where it was moved until the spec line changes', async t => {
  const { withOverrides } = await import('../../../blanket-manager/planner/placement.ts')
  const s = spec([host('h1', 'a'), host('h2', 'a')], [vm('web1', { host: 'h1' }), vm('free')])
  const moved = withOverrides(s, { web1: { host: 'h2', specHost: 'h1' }, free: { host: 'h2' } })
  t.equal(moved.vms.web1?.host, 'h2')
  t.equal(moved.vms.free?.host, 'h2', 'an unpinned VM stays on its new host too')
  t.equal(withOverrides({ ...s, vms: { ...s.vms, web1: { ...s.vms.web1!, host: 'h2' } } }, { web1: { host: 'h1', specHost: 'h1' } }).vms.web1?.host, 'h2', 'an edited spec line wins')
  t.equal(withOverrides(s, { web1: { host: 'gone-host', specHost: 'h1' } }).vms.web1?.host, 'h1', 'an override to a removed host is ignored')
})
