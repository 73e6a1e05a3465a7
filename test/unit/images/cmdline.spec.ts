import t from 'tap'
import { guestCmdline, guestReadyLine, parseGuestCmdline, GUEST_READY_MARKER } from '../../../images/guest/cmdline.ts'
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
