import t from 'tap'
import {
  extenderDevName, extenderEnds, extenderFiles, extenderRoutes, extenderTunnel, normaliseFingerprint, openVpnConfig,
  parseOpenVpnStatus, parseRouteGet, DEFAULT_UNDERLAY_POLICY, FALLBACK_METRIC, type OpenVpnEndOptions
} from '../../../../virtualwire/extender/openvpn.ts'
import { ExtenderError } from '../../../../virtualwire/extender/errors.ts'

const FP_A = '14:3D:03:07:4A:1E:31:FC:84:41:F4:B3:32:4C:41:2A:96:89:7A:F2:C1:CA:30:CE:C6:B5:57:BA:54:A1:A6:0D'
const FP_B = '7E:83:ED:19:99:D3:97:CA:E2:AB:52:A0:AB:5E:43:0E:64:E6:DA:E9:7E:54:12:9B:69:BE:D4:C0:CA:35:8E:AA'

function end (over: Partial<OpenVpnEndOptions> = {}): OpenVpnEndOptions {
  return {
    name: 'a-b',
    local: { ip: '198.18.40.10', port: 1194 },
    remote: { ip: '198.18.41.10', port: 1194 },
    tunnelLocal: '198.19.254.1',
    tunnelRemote: '198.19.254.2',
    certPath: '/var/lib/sc/ext/a-b.crt',
    keyPath: '/var/lib/sc/ext/a-b.key',
    peerFingerprint: FP_B,
    dev: 'sc12abv0',
    tlsRole: 'server',
    runDir: '/var/lib/sc/ext',
    ...over
  }
}

t.test('server end: the whole configuration', async t => {
  t.equal(openVpnConfig(end()), [
    '# supercloud extender a-b (server end), generated; do not edit',
    'dev sc12abv0',
    'dev-type tun',
    'topology p2p',
    'proto udp',
    'local 198.18.40.10',
    'lport 1194',
    'remote 198.18.41.10 1194',
    'ifconfig 198.19.254.1 198.19.254.2',
    'tls-server',
    'dh none',
    'tls-version-min 1.2',
    'cert /var/lib/sc/ext/a-b.crt',
    'key /var/lib/sc/ext/a-b.key',
    `peer-fingerprint ${FP_B}`,
    'data-ciphers AES-256-GCM',
    'data-ciphers-fallback AES-256-GCM',
    'allow-recursive-routing',
    'persist-tun',
    'keepalive 5 30',
    `mark ${DEFAULT_UNDERLAY_POLICY.mark}`,
    'writepid /var/lib/sc/ext/a-b.pid',
    'status /var/lib/sc/ext/a-b.status 1',
    'status-version 1',
    'log /var/lib/sc/ext/a-b.log',
    'verb 3',
    'mute-replay-warnings',
    ''
  ].join('\n'))
})

t.test('client end: tls-client, no dh; options', async t => {
  const c = openVpnConfig(end({ tlsRole: 'client', cipher: 'AES-128-GCM', keepalive: { intervalS: 2, timeoutS: 10 }, mark: 7, peerFingerprint: FP_A.toLowerCase().replace(/:/g, '') }))
  t.match(c, /^tls-client$/m)
  t.notMatch(c, /^dh /m)
  t.match(c, /^data-ciphers AES-128-GCM$/m)
  t.match(c, /^keepalive 2 10$/m)
  t.match(c, /^mark 7$/m)
  t.match(c, new RegExp(`^peer-fingerprint ${FP_A}$`, 'm'), 'fingerprint normalised')
})

t.test('bad options are ExtenderErrors', async t => {
  const bad: Array<Partial<OpenVpnEndOptions>> = [
    { name: 'A_B' }, { local: { ip: '198.18.40', port: 1194 } }, { remote: { ip: '198.18.41.10', port: 0 } },
    { tunnelLocal: '198.19.254.2' }, { dev: 'a-very-long-device-name' }, { certPath: 'relative.crt' },
    { keyPath: '/with space/k' }, { peerFingerprint: 'AB:CD' }, { cipher: 'AES 256' }, { keepalive: { intervalS: 10, timeoutS: 15 } }
  ]
  for (const b of bad) t.throws(() => openVpnConfig(end(b)), ExtenderError, JSON.stringify(b))
  try { openVpnConfig(end({ dev: 'x'.repeat(16) })) } catch (err) { t.equal((err as ExtenderError).code, 'SC_EXTENDER') }
})

t.test('fingerprints: openssl output, plain hex, colons; anything else rejected', async t => {
  t.equal(normaliseFingerprint(`sha256 Fingerprint=${FP_A}\n`), FP_A)
  t.equal(normaliseFingerprint(`SHA256 Fingerprint=${FP_A.toLowerCase()}`), FP_A)
  t.equal(normaliseFingerprint(FP_A.replace(/:/g, '').toLowerCase()), FP_A)
  t.equal(normaliseFingerprint(`SHA256:${FP_A}`), FP_A)
  t.throws(() => normaliseFingerprint('14:3D'), ExtenderError)
  t.throws(() => normaliseFingerprint(FP_A.replace(/:/g, '').slice(0, 63) + 'g'), ExtenderError)
  t.throws(() => normaliseFingerprint('143D:03' + FP_A.slice(7)), ExtenderError, 'misplaced colons')
})

t.test('tunnel /30s, device names, files', async t => {
  t.same(extenderTunnel(0), { cidr: '198.19.254.0/30', a: '198.19.254.1', b: '198.19.254.2' })
  t.same(extenderTunnel(63), { cidr: '198.19.254.252/30', a: '198.19.254.253', b: '198.19.254.254' })
  t.throws(() => extenderTunnel(64), ExtenderError)
  t.throws(() => extenderTunnel(-1), ExtenderError)
  t.equal(extenderDevName('sc3f2a', 0), 'sc3f2av0')
  t.equal(extenderDevName('sc3f2a', 63), 'sc3f2av3f')
  t.throws(() => extenderDevName('abcdefghijklmn', 10), ExtenderError)
  t.same(extenderFiles('/run/x/', 'a-b'), { config: '/run/x/a-b.conf', pid: '/run/x/a-b.pid', status: '/run/x/a-b.status', log: '/run/x/a-b.log', cert: '/run/x/a-b.crt', key: '/run/x/a-b.key' })
})

t.test('extenderEnds: mirrored addresses, crossed fingerprints, a is the server', async t => {
  const side = (ip: string, fp: string, dev: string): Parameters<typeof extenderEnds>[0]['a'] =>
    ({ ip, port: 1195, certPath: `/d/${dev}.crt`, keyPath: `/d/${dev}.key`, fingerprint: fp, dev, runDir: '/d' })
  const { a, b } = extenderEnds({ name: 'x', index: 1, a: side('198.18.40.10', FP_A, 'va'), b: side('198.18.41.10', FP_B, 'vb') })
  t.same([a.tunnelLocal, a.tunnelRemote, b.tunnelLocal, b.tunnelRemote], ['198.19.254.5', '198.19.254.6', '198.19.254.6', '198.19.254.5'])
  t.equal(a.peerFingerprint, FP_B)
  t.equal(b.peerFingerprint, FP_A)
  t.same([a.tlsRole, b.tlsRole], ['server', 'client'])
  t.same(a.remote, { ip: '198.18.41.10', port: 1195 })
  t.same(b.remote, { ip: '198.18.40.10', port: 1195 })
  t.equal(a.dev, 'va')
  t.equal(b.certPath, '/d/vb.crt')
})

t.test('status file counters', async t => {
  const text = 'OpenVPN STATISTICS\nUpdated,2026-11-23 13:38:47\nTUN/TAP read bytes,264\nTUN/TAP write bytes,132\nTCP/UDP read bytes,1610\nTCP/UDP write bytes,1614\nAuth read bytes,164\nEND\n'
  t.same(parseOpenVpnStatus(text), { tunReadBytes: 264, tunWriteBytes: 132, linkReadBytes: 1610, linkWriteBytes: 1614, updated: '2026-11-23 13:38:47' })
  t.equal(parseOpenVpnStatus('OpenVPN STATISTICS\nEND\n'), undefined)
})

t.test('ip route get output', async t => {
  t.same(parseRouteGet('198.18.41.10 via 198.18.40.1 dev br0 src 198.18.40.10 mark 0x5c0e uid 0 \n    cache \n'), { via: '198.18.40.1', dev: 'br0', src: '198.18.40.10' })
  t.same(parseRouteGet('198.18.40.11 dev br0 src 198.18.40.10 uid 0\n'), { dev: 'br0', src: '198.18.40.10' })
  t.equal(parseRouteGet('unreachable 198.18.41.10 ...'), undefined)
  t.equal(parseRouteGet(''), undefined)
})

const sites = { a: { subnet: '198.18.40.0/24' }, b: { subnet: '198.18.41.0/24' }, c: { subnet: '198.18.42.7/24' } }
const hostsBySite = {
  a: [{ name: 'agw', address: '198.18.40.10' }, { name: 'a2', address: '198.18.40.11' }],
  b: [{ name: 'bgw', address: '198.18.41.10' }],
  c: [{ name: 'c1', address: '198.18.42.10' }]
}
const ab = { name: 'a-b', a: { site: 'a', dev: 'scv0', tunnelIp: '198.19.254.1', endpoint: '198.18.40.10' }, b: { site: 'b', dev: 'scv0', tunnelIp: '198.19.254.2', endpoint: '198.18.41.10' } }

t.test('routing plan: gateways via the tunnel peer, others via their gateway', async t => {
  const plan = extenderRoutes({ sites, gateways: { a: 'agw', b: 'bgw' }, hostsBySite, tunnels: [ab] })
  t.same(plan.agw, {
    host: 'agw',
    site: 'a',
    gateway: true,
    routes: [
      ['198.18.41.0/24', 'via', '198.19.254.2', 'dev', 'scv0', 'src', '198.18.40.10'],
      ['unreachable', '198.18.41.0/24', 'metric', String(FALLBACK_METRIC)]
    ],
    underlayPins: ['198.18.41.10'],
    policy: DEFAULT_UNDERLAY_POLICY
  })
  t.same(plan.a2, { host: 'a2', site: 'a', gateway: false, routes: [['198.18.41.0/24', 'via', '198.18.40.10']], underlayPins: [] })
  t.same(plan.bgw?.routes, [
    ['198.18.40.0/24', 'via', '198.19.254.1', 'dev', 'scv0', 'src', '198.18.41.10'],
    ['unreachable', '198.18.40.0/24', 'metric', String(FALLBACK_METRIC)]
  ])
  t.same(plan.bgw?.underlayPins, ['198.18.40.10'])
  t.same(plan.c1, { host: 'c1', site: 'c', gateway: false, routes: [], underlayPins: [] }, 'a site without an extender keeps the WAN')
})

t.test('routing plan: a hub gateway with two extenders; subnets normalised', async t => {
  const ac = { name: 'a-c', a: { site: 'a', dev: 'scv1', tunnelIp: '198.19.254.5', endpoint: '198.18.40.10' }, b: { site: 'c', dev: 'scv1', tunnelIp: '198.19.254.6', endpoint: '198.18.42.10' } }
  const plan = extenderRoutes({ sites, gateways: { a: 'agw', b: 'bgw', c: 'c1' }, hostsBySite, tunnels: [ab, ac] })
  t.same(plan.a2?.routes, [['198.18.41.0/24', 'via', '198.18.40.10'], ['198.18.42.0/24', 'via', '198.18.40.10']])
  t.same(plan.agw?.underlayPins, ['198.18.41.10', '198.18.42.10'])
  t.same(plan.c1?.routes[0], ['198.18.40.0/24', 'via', '198.19.254.5', 'dev', 'scv1', 'src', '198.18.42.10'])
  t.same(plan.bgw?.routes.length, 2, 'b only routes a (no b-c extender)')
})

t.test('routing plan: inconsistent input is an ExtenderError', async t => {
  t.throws(() => extenderRoutes({ sites, gateways: { a: 'agw' }, hostsBySite, tunnels: [ab] }), /site b has no gateway host/)
  t.throws(() => extenderRoutes({ sites, gateways: { a: 'agw', b: 'nope' }, hostsBySite, tunnels: [ab] }), /gateway nope of site b/)
  t.throws(() => extenderRoutes({ sites, gateways: { a: 'agw', b: 'bgw' }, hostsBySite, tunnels: [ab, { ...ab, name: 'again' }] }), /already have an extender/)
  t.throws(() => extenderRoutes({ sites, gateways: { a: 'agw' }, hostsBySite, tunnels: [{ ...ab, b: { ...ab.b, site: 'a' } }] }), /both ends are in site a/)
  t.throws(() => extenderRoutes({ sites: { a: sites.a, b: { subnet: 'nope' } }, gateways: { a: 'agw', b: 'bgw' }, hostsBySite, tunnels: [ab] }), /site b has no valid subnet/)
})
