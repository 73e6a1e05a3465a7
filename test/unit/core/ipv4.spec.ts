import t from 'tap'
import {
  parseIpv4, formatIpv4, parseCidr, formatCidr, networkOf, broadcastOf, cidrContains, cidrsOverlap, firstHostOf, maskOf, sizeOf, isUsableHost
} from '../../../core/ipv4.ts'

t.test('parseIpv4 / formatIpv4', async t => {
  t.equal(parseIpv4('198.18.1.1'), (198 << 24 >>> 0) + (18 << 16) + (1 << 8) + 1)
  t.equal(parseIpv4('0.0.0.0'), 0)
  t.equal(parseIpv4('255.255.255.255'), 0xffffffff)
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', 'a.b.c.d', '1.2.3.4/24', ' 1.2.3.4']) {
    t.equal(parseIpv4(bad), undefined, `'${bad}' rejected`)
  }
  for (const s of ['198.18.1.1', '10.0.0.255', '0.0.0.0', '255.255.255.255']) t.equal(formatIpv4(parseIpv4(s) as number), s)
})

t.test('CIDR helpers', async t => {
  const a = parseCidr('198.18.1.101/24')
  t.ok(a)
  if (a === undefined) return
  t.equal(formatCidr(a), '198.18.1.101/24')
  t.equal(formatIpv4(networkOf(a)), '198.18.1.0')
  t.equal(formatIpv4(broadcastOf(a)), '198.18.1.255')
  t.equal(formatIpv4(firstHostOf(a)), '198.18.1.1')
  t.ok(cidrContains(a, parseIpv4('198.18.1.7') as number))
  t.notOk(cidrContains(a, parseIpv4('198.18.2.7') as number))
  t.equal(maskOf(0), 0)
  t.equal(maskOf(32), 0xffffffff)
  const all = parseCidr('0.0.0.0/0')
  t.ok(all !== undefined && cidrContains(all, 0xffffffff))
  for (const bad of ['198.18.1.0', '198.18.1.0/33', '198.18.1.0/', '198.18.1.0/024', '198.18.1.300/24', '/24']) t.equal(parseCidr(bad), undefined, `'${bad}' rejected`)
  const c = (s: string): NonNullable<ReturnType<typeof parseCidr>> => parseCidr(s) as NonNullable<ReturnType<typeof parseCidr>>
  t.ok(cidrsOverlap(c('198.18.0.0/23'), c('198.18.1.0/24')))
  t.ok(cidrsOverlap(c('198.18.1.0/24'), c('198.18.0.0/15')))
  t.notOk(cidrsOverlap(c('198.18.1.0/24'), c('198.18.2.0/24')))
  t.notOk(cidrsOverlap(c('198.18.1.0/25'), c('198.18.1.128/25')))
})

t.test('sizeOf / isUsableHost', async t => {
  const c = (s: string): NonNullable<ReturnType<typeof parseCidr>> => parseCidr(s) as NonNullable<ReturnType<typeof parseCidr>>
  const ip = (s: string): number => parseIpv4(s) as number
  t.equal(sizeOf(c('198.18.1.0/24')), 256)
  t.equal(sizeOf(c('0.0.0.0/0')), 2 ** 32)
  t.equal(sizeOf(c('198.18.1.7/32')), 1)
  t.ok(isUsableHost(c('198.18.1.0/24'), ip('198.18.1.1')))
  t.ok(isUsableHost(c('198.18.1.0/24'), ip('198.18.1.254')))
  t.notOk(isUsableHost(c('198.18.1.0/24'), ip('198.18.1.0')), 'network address')
  t.notOk(isUsableHost(c('198.18.1.0/24'), ip('198.18.1.255')), 'broadcast address')
  t.notOk(isUsableHost(c('198.18.1.0/24'), ip('198.18.2.1')), 'outside')
  t.ok(isUsableHost(c('198.18.1.101/24'), ip('198.18.1.5')), 'host bits of the CIDR do not matter')
  t.ok(isUsableHost(c('198.18.1.0/31'), ip('198.18.1.0')), 'a /31 has no network or broadcast address')
  t.ok(isUsableHost(c('198.18.1.9/32'), ip('198.18.1.9')))
  t.notOk(isUsableHost(c('198.18.1.9/32'), ip('198.18.1.8')))
})
