import t from 'tap'
import { fitName, hostNs, siteNs, wanNs, wanSideLink, siteSideLink, checkPrefix } from '../../../drivers/local/names.ts'

t.test('names that fit are kept', async t => {
  t.equal(hostNs('sct1a2b', 'h1'), 'sct1a2b-h-h1')
  t.equal(siteNs('sct1a2b', 'east'), 'sct1a2b-s-east')
  t.equal(wanNs('sc3f2a12'), 'sc3f2a12-wan')
  t.equal(wanSideLink('east'), 's-east')
  t.equal(siteSideLink('web-1'), 'h-web-1')
})

t.test('long names are shortened, keep the prefix, fit 15 chars and stay distinct', async t => {
  const a = hostNs('sc3f2a12', 'database-primary')
  const b = hostNs('sc3f2a12', 'database-replica')
  t.equal(a.length, 15)
  t.ok(a.startsWith('sc3f2a12-'))
  t.not(a, b)
  t.equal(hostNs('sc3f2a12', 'database-primary'), a, 'stable')
  t.match(a, /_[0-9a-z]{4}$/)
  t.equal(fitName('x'.repeat(15)), 'x'.repeat(15))
  t.equal(fitName('x'.repeat(16)).length, 15)
  t.ok(siteSideLink('a-very-long-host-name').length <= 15)
})

t.test('prefixes are validated', async t => {
  t.throws(() => checkPrefix('toolongprefix'), { code: 'SC_LOCAL_DRIVER' })
  t.throws(() => checkPrefix('Bad'), { code: 'SC_LOCAL_DRIVER' })
  t.throws(() => checkPrefix(''), { code: 'SC_LOCAL_DRIVER' })
  t.doesNotThrow(() => checkPrefix('sct1a2b'))
})
