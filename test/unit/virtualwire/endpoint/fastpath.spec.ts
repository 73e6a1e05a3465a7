import t from 'tap'
import {
  FAST_PATH_PREF, describeShape, endpointShape, isSwitchPortLink, planFastPath, planFastPaths, type FastPathStep
} from '../../../../virtualwire/endpoint/fastpath.ts'
import { fastPathUnsupported, parseClsactDevices, parseFastPathRedirect, parseObservedLinks, stepCommands, tcVersion } from '../../../../virtualwire/endpoint/kernel.ts'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ObservedLink } from '../../../../virtualwire/endpoint/plan.ts'
import type { EndpointConfig } from '../../../../virtualwire/types.ts'

const P = 'sc12'
const encap: EndpointConfig = { id: 7, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.2.10', port: 4789 } }
const collapsed: EndpointConfig = { ...encap, remote: { ...encap.local } }

const bridge: ObservedLink = { name: 'sc12b7', kind: 'bridge', mtu: 1450, up: true }
const vxlan = (extra: Partial<ObservedLink> = {}): ObservedLink => ({
  name: 'sc12x7', kind: 'vxlan', mtu: 1450, up: true, master: 'sc12b7', vxlan: { id: 7, local: '198.18.1.10', port: 4789, learning: false }, ...extra
})
const tap = (name = 'sc12t0a1b2c', extra: Partial<ObservedLink> = {}): ObservedLink => ({ name, kind: 'tun', mtu: 1450, up: true, master: 'sc12b7', ...extra })

t.test('shape: one NIC on an encapsulated endpoint gets the fast path', async t => {
  t.same(endpointShape(7, encap, [bridge, vxlan(), tap()], P), { kind: 'direct', nic: 'sc12t0a1b2c', vxlan: 'sc12x7' })
  // A VM's veth or a Xen vif, whatever its name, counts like a TAP.
  t.same(endpointShape(7, encap, [bridge, vxlan(), tap('vif3.0', { kind: 'veth' })], P), { kind: 'direct', nic: 'vif3.0', vxlan: 'sc12x7' })
})

t.test('shape: the bridge stays where it is needed', async t => {
  t.same(endpointShape(7, undefined, [bridge, vxlan(), tap()], P), { kind: 'none' })
  t.same(endpointShape(7, collapsed, [bridge, tap('sc12ta'), tap('sc12tb')], P), { kind: 'collapsed' })
  t.match(endpointShape(7, encap, [bridge, vxlan()], P), { kind: 'bridged', why: /no NIC/ })
  t.match(endpointShape(7, encap, [bridge, tap()], P), { kind: 'bridged', why: /no VXLAN/ })
  t.match(endpointShape(7, encap, [bridge, vxlan(), tap('sc12ta'), tap('sc12tb')], P), { kind: 'bridged', why: /2 links attached/ })
  t.match(endpointShape(7, encap, [bridge, vxlan(), tap('sc12p7a', { kind: 'veth' })], P), { kind: 'bridged', why: /switch port sc12p7a/ })
  // A NIC on another endpoint's bridge is not this endpoint's.
  t.match(endpointShape(7, encap, [bridge, vxlan(), tap('sc12t9', { master: 'sc12b9' })], P), { kind: 'bridged', why: /no NIC/ })
  t.ok(isSwitchPortLink(P, 'sc12p1fb'))
  t.notOk(isSwitchPortLink(P, 'sc12t1fb'))
  t.match(describeShape({ kind: 'direct', nic: 'a', vxlan: 'b' }), /fast path a <-> b/)
})

t.test('plan: install both redirects, adding clsact only where missing', async t => {
  t.same(planFastPath(7, encap, [bridge, vxlan(), tap('sc12t1', { clsact: true })], P), [
    { op: 'redirect', from: 'sc12t1', to: 'sc12x7', addQdisc: false, replace: false },
    { op: 'redirect', from: 'sc12x7', to: 'sc12t1', addQdisc: true, replace: false }
  ])
  // Installed already: nothing.
  t.same(planFastPath(7, encap, [bridge, vxlan({ clsact: true, redirect: 'sc12t1' }), tap('sc12t1', { clsact: true, redirect: 'sc12x7' })], P), [])
})

t.test('plan: a new TAP replaces the old one (VM restarted, NIC re-attached)', async t => {
  const links = [bridge, vxlan({ clsact: true, redirect: '*' }), tap('sc12t2')]
  t.same(planFastPath(7, encap, links, P), [
    { op: 'redirect', from: 'sc12t2', to: 'sc12x7', addQdisc: true, replace: false },
    { op: 'redirect', from: 'sc12x7', to: 'sc12t2', addQdisc: false, replace: true }
  ])
  // The old TAP, detached from the bridge but still redirecting into our VXLAN device: removed first.
  const old = tap('sc12t1', { master: undefined, clsact: true, redirect: 'sc12x7' })
  t.same(planFastPath(7, encap, [bridge, vxlan({ clsact: true, redirect: 'sc12t1' }), old, tap('sc12t2')], P).map(s => s.op === 'unredirect' ? `- ${s.dev}` : `+ ${s.from}`),
    ['- sc12t1', '+ sc12t2', '+ sc12x7'])
})

t.test('plan: leaving the direct shape removes the filters (second NIC, collapse, destroy, detach)', async t => {
  const on = [bridge, vxlan({ clsact: true, redirect: 'sc12t1' }), tap('sc12t1', { clsact: true, redirect: 'sc12x7' })]
  const removed = (s: FastPathStep[]): string[] => s.map(x => x.op === 'unredirect' ? x.dev : `?${x.op}`)
  t.same(removed(planFastPath(7, encap, [...on, tap('sc12t2')], P)), ['sc12x7', 'sc12t1'])
  t.same(removed(planFastPath(7, collapsed, on, P)), ['sc12x7', 'sc12t1'])
  t.same(removed(planFastPath(7, undefined, on, P)), ['sc12x7', 'sc12t1'])
  const detached = [bridge, vxlan({ clsact: true, redirect: 'sc12t1' }), tap('sc12t1', { master: undefined, clsact: true, redirect: 'sc12x7' })]
  t.same(removed(planFastPath(7, encap, detached, P)), ['sc12x7', 'sc12t1'])
  // Other endpoints' filters are not touched.
  const other = tap('sc12t9', { master: 'sc12b9', clsact: true, redirect: 'sc12x9' })
  t.same(planFastPath(7, encap, [bridge, vxlan(), other], P), [])
})

t.test('whole host: stale filters of endpoints that are gone; fast path off removes ours only', async t => {
  const e9: EndpointConfig = { ...encap, id: 9 }
  const links: ObservedLink[] = [
    bridge, vxlan({ clsact: true, redirect: 'sc12t1' }), tap('sc12t1', { clsact: true, redirect: 'sc12x7' }),
    tap('sc12t5', { master: undefined, clsact: true, redirect: 'sc12x5' }), // endpoint 5 destroyed
    tap('sc12t6', { master: undefined, clsact: true, redirect: '*' }), // its VXLAN device deleted
    tap('other0', { master: undefined, clsact: true, redirect: '*' }), // not ours
    { name: 'sc12b9', kind: 'bridge', mtu: 1450, up: true },
    { ...vxlan({ name: 'sc12x9', master: 'sc12b9' }), vxlan: { id: 9, local: '198.18.1.10', port: 4789, learning: false } },
    tap('sc12t9', { master: 'sc12b9' })
  ]
  t.same(planFastPaths([encap, e9], links, P), [
    { op: 'redirect', from: 'sc12t9', to: 'sc12x9', addQdisc: true, replace: false },
    { op: 'redirect', from: 'sc12x9', to: 'sc12t9', addQdisc: true, replace: false },
    { op: 'unredirect', dev: 'sc12t5' },
    { op: 'unredirect', dev: 'sc12t6' }
  ])
  t.same(planFastPaths([encap, e9], links, P, false), [
    { op: 'unredirect', dev: 'sc12x7' },
    { op: 'unredirect', dev: 'sc12t1' },
    { op: 'unredirect', dev: 'sc12t5' },
    { op: 'unredirect', dev: 'sc12t6' }
  ])
})

t.test('tc commands and output parsing', async t => {
  t.same(stepCommands({ op: 'redirect', from: 'sc12t1', to: 'sc12x7', addQdisc: true, replace: true }), [
    ['tc', 'qdisc', 'add', 'dev', 'sc12t1', 'clsact'],
    ['tc', 'filter', 'del', 'dev', 'sc12t1', 'ingress', 'pref', String(FAST_PATH_PREF), 'protocol', 'all'],
    ['tc', 'filter', 'add', 'dev', 'sc12t1', 'ingress', 'pref', String(FAST_PATH_PREF), 'protocol', 'all', 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', 'sc12x7']
  ])
  t.same(stepCommands({ op: 'unredirect', dev: 'sc12t1' }), [['tc', 'filter', 'del', 'dev', 'sc12t1', 'ingress', 'pref', String(FAST_PATH_PREF), 'protocol', 'all']])
  // `tc -j` output of this kernel (iproute2 6.1).
  const filters = JSON.stringify([
    { protocol: 'all', pref: FAST_PATH_PREF, kind: 'u32', chain: 0 },
    { protocol: 'all', pref: FAST_PATH_PREF, kind: 'u32', chain: 0, options: { fh: '800:', ht_divisor: 1 } },
    { protocol: 'all', pref: FAST_PATH_PREF, kind: 'u32', chain: 0, options: { fh: '800::800', actions: [{ order: 1, kind: 'mirred', mirred_action: 'redirect', direction: 'egress', to_dev: 'sc12x7' }] } }
  ])
  t.equal(parseFastPathRedirect(filters), 'sc12x7')
  t.equal(parseFastPathRedirect(filters.replaceAll(String(FAST_PATH_PREF), '49152')), undefined, 'another priority is not ours')
  t.equal(parseFastPathRedirect('[]'), undefined)
  t.same([...parseClsactDevices(JSON.stringify([{ kind: 'noqueue', dev: 'v2' }, { kind: 'clsact', handle: 'ffff:', dev: 'sc12t1' }]))], ['sc12t1'])
  // Links enslaved to our bridges are observed whatever their name.
  const linkJson = JSON.stringify([{ ifname: 'vif3.0', mtu: 1450, flags: ['UP'], master: 'sc12b7', linkinfo: { info_kind: 'veth' } }, { ifname: 'eth0', mtu: 1500, flags: [] }])
  t.same(parseObservedLinks(linkJson, '[]', P).map(l => l.name), ['vif3.0'])
})

t.test('the fast path is turned off where tc cannot do it, with the reason', async t => {
  t.equal(fastPathUnsupported('tc utility, iproute2-6.1.0, libbpf 1.1.2\n'), undefined, 'iproute2\'s tc: on')
  t.match(fastPathUnsupported(undefined), /tc is not installed \(Debian package iproute2\)/)
  // What BusyBox's tc (the Xen dom0's) answers to -V: its usage, through a failed command.
  t.match(fastPathUnsupported('`tc -V` failed: \t[root|classid CLASSID] [handle FILTERID] | filter show [dev STRING] [root|parent CLASSID]'), /tc is not iproute2's .*clsact and mirred/)
  // And the version probe itself, against this machine's tc and a BusyBox one first on PATH.
  t.equal(fastPathUnsupported(await tcVersion()), undefined, 'this machine has iproute2\'s tc')
  const dir = mkdtempSync(join(tmpdir(), 'sc-bbtc-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  symlinkSync('/bin/busybox', join(dir, 'tc'))
  const path = process.env.PATH
  process.env.PATH = `${dir}:${path ?? ''}`
  try {
    t.match(fastPathUnsupported(await tcVersion()), /not iproute2's/, 'BusyBox\'s tc: off')
  } finally {
    process.env.PATH = path
  }
})
