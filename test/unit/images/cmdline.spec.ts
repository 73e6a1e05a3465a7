import t from 'tap'
import { guestCmdline, guestReadyLine, isL2fwMatch, l2fwArgs, parseGuestCmdline, GUEST_READY_MARKER, type GuestFirewall } from '../../../images/guest/cmdline.ts'
import { GuestCmdlineError } from '../../../images/guest/errors.ts'

t.test('minimal guest: console, name, one nic', async t => {
  const line = guestCmdline({ name: 'web1', nics: [{ ifname: 'eth0', address: '198.18.1.101/24' }] })
  t.equal(line, 'console=ttyS0 quiet panic=-1 sc.name=web1 sc.net=eth0:198.18.1.101/24')
})

t.test('all options, in contract order', async t => {
  const line = guestCmdline({
    name: 'db-2.prod',
    nics: [{ ifname: 'eth0', address: '198.18.1.5/24' }, { ifname: 'eth1', address: '198.19.0.5/16' }],
    gateway: '198.18.1.1',
    mtu: 1450,
    swapDevice: '/dev/vdb',
    udpEchoPort: 7007
  })
  t.equal(line, 'console=ttyS0 quiet panic=-1 sc.name=db-2.prod sc.net=eth0:198.18.1.5/24,eth1:198.19.0.5/16 sc.gw=198.18.1.1 sc.mtu=1450 sc.swap=/dev/vdb sc.echo=7007')
})

t.test('no nics: no sc.net at all', async t => {
  t.equal(guestCmdline({ name: 'lonely', nics: [] }), 'console=ttyS0 quiet panic=-1 sc.name=lonely')
})

t.test('parse is the inverse of build', async t => {
  const opts = {
    name: 'vm7',
    nics: [{ ifname: 'eth0', address: '198.18.3.7/24' }, { ifname: 'eth1', address: '198.18.4.7/24' }],
    gateway: '198.18.3.1',
    mtu: 1400,
    swapDevice: '/dev/vdc',
    udpEchoPort: 9
  }
  t.same(parseGuestCmdline(guestCmdline(opts)), opts)
  t.same(parseGuestCmdline('console=ttyS0 ro root=/dev/vda1'), { nics: [] })
})

t.test('ready line is what init prints', async t => {
  t.equal(guestReadyLine('web1'), 'SUPERCLOUD-GUEST-READY web1')
  t.equal(GUEST_READY_MARKER, 'SUPERCLOUD-GUEST-READY')
})

t.test('rejects values that would break the command line or init', async t => {
  const nic = { ifname: 'eth0', address: '198.18.1.1/24' }
  const bad: Array<[string, () => string]> = [
    ['name', () => guestCmdline({ name: 'has space', nics: [] })],
    ['name', () => guestCmdline({ name: '', nics: [] })],
    ['name', () => guestCmdline({ name: "it's", nics: [] })],
    ['name', () => guestCmdline({ name: '-x', nics: [] })],
    ['nics[0].ifname', () => guestCmdline({ name: 'a', nics: [{ ifname: 'eth0:1', address: '198.18.1.1/24' }] })],
    ['nics[0].ifname', () => guestCmdline({ name: 'a', nics: [{ ifname: 'averyveryverylongname', address: '198.18.1.1/24' }] })],
    ['nics[1].ifname', () => guestCmdline({ name: 'a', nics: [nic, nic] })],
    ['nics[0].address', () => guestCmdline({ name: 'a', nics: [{ ifname: 'eth0', address: '198.18.1.1' }] })],
    ['nics[0].address', () => guestCmdline({ name: 'a', nics: [{ ifname: 'eth0', address: '198.18.1.256/24' }] })],
    ['nics[0].address', () => guestCmdline({ name: 'a', nics: [{ ifname: 'eth0', address: '198.18.1.1/33' }] })],
    ['nics[0].address', () => guestCmdline({ name: 'a', nics: [{ ifname: 'eth0', address: '198.018.1.1/24' }] })],
    ['gateway', () => guestCmdline({ name: 'a', nics: [nic], gateway: '198.18.1' })],
    ['mtu', () => guestCmdline({ name: 'a', nics: [nic], mtu: 1450.5 })],
    ['mtu', () => guestCmdline({ name: 'a', nics: [nic], mtu: 20 })],
    ['swapDevice', () => guestCmdline({ name: 'a', nics: [nic], swapDevice: 'vdb' })],
    ['swapDevice', () => guestCmdline({ name: 'a', nics: [nic], swapDevice: '/dev/vdb x' })],
    ['udpEchoPort', () => guestCmdline({ name: 'a', nics: [nic], udpEchoPort: 70000 })]
  ]
  for (const [field, fn] of bad) {
    let caught: unknown
    try { fn() } catch (err) { caught = err }
    t.ok(caught instanceof GuestCmdlineError, `rejects bad ${field} with GuestCmdlineError`)
    if (caught instanceof GuestCmdlineError) {
      t.equal(caught.code, 'SC_GUEST_CMDLINE')
      t.equal(caught.field, field)
    }
  }
})

t.test('custom console', async t => {
  t.match(guestCmdline({ name: 'a', nics: [], console: 'ttyS1,115200' }), /^console=ttyS1,115200 /)
})

t.test('sc.fw: l2fw arguments joined by commas, parsed back', async t => {
  const firewall = {
    between: ['eth0', 'eth1'] as [string, string],
    rules: [
      { action: 'allow' as const, match: 'arp' },
      { action: 'allow' as const, match: 'icmp' },
      { action: 'allow' as const, match: 'udp:7' },
      { action: 'drop' as const, match: 'vlan:10+tcp:8000-8080' }
    ],
    default: 'drop' as const
  }
  const line = guestCmdline({ name: 'fw1', nics: [], firewall })
  t.equal(line, 'console=ttyS0 quiet panic=-1 sc.name=fw1 sc.fw=eth0,eth1,--allow,arp,--allow,icmp,--allow,udp:7,--drop,vlan:10+tcp:8000-8080,--default,drop')
  t.same(parseGuestCmdline(line).firewall, firewall)
  t.same(l2fwArgs({ between: ['eth1', 'eth2'] }), ['eth1', 'eth2'], 'no rules: forward everything')
  t.same(parseGuestCmdline(guestCmdline({ name: 'fw2', nics: [], firewall: { between: ['eth1', 'eth2'] } })).firewall, { between: ['eth1', 'eth2'] })
})

t.test('l2fw matches: the grammar of l2fw --help', async t => {
  for (const m of ['any', 'arp', 'ip', 'ipv4', 'ipv6', 'ip6', 'icmp', 'icmp6', 'tcp', 'udp', 'sctp', 'udp:7', 'tcp:1-65535',
    'ethertype:0x88cc', 'ethertype:2048', 'proto:47', 'vlan', 'vlan:0', 'vlan:4094', 'untagged', 'vlan:10+udp:53', 'ipv4+untagged']) {
    t.ok(isL2fwMatch(m), `${m} is a match`)
  }
  for (const m of ['', 'tcp:0', 'tcp:70000', 'udp:9-7', 'udp:', 'vlan:4095', 'proto:256', 'ethertype:0x12345', 'foo', 'arp+', '+arp', 'icmp:1', 'arp,icmp', 'udp:07']) {
    t.notOk(isL2fwMatch(m), `'${m}' is not a match`)
  }
})

t.test('bad firewall values are GuestCmdlineErrors naming the field', async t => {
  const cases: Array<[string, GuestFirewall]> = [
    ['firewall.between[1]', { between: ['eth0', 'eth 1'] }],
    ['firewall.between', { between: ['eth0', 'eth0'] }],
    ['firewall.rules[1].match', { between: ['eth0', 'eth1'], rules: [{ action: 'allow', match: 'arp' }, { action: 'allow', match: 'udp,7' }] }],
    ['firewall.rules[0].action', { between: ['eth0', 'eth1'], rules: [{ action: 'accept' as 'allow', match: 'arp' }] }],
    ['firewall.default', { between: ['eth0', 'eth1'], default: 'reject' as 'drop' }]
  ]
  for (const [field, firewall] of cases) {
    let caught: unknown
    try { guestCmdline({ name: 'fw', nics: [], firewall }) } catch (err) { caught = err }
    t.ok(caught instanceof GuestCmdlineError && caught.field === field, `rejected with field ${field}`)
  }
})
