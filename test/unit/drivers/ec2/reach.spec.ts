/** How an ec2 site and a local site reach each other: extender peer addresses, the local uplink option, which sites the local driver builds. */
import t from 'tap'
import { peerAddress } from '../../../../blanket-manager/controller/index.ts'
import { parseUplink, uplinkNftRules, uplinkPeerLink } from '../../../../drivers/local/uplink.ts'
import { localSites } from '../../../../drivers/local/plan.ts'
import type { HostRecord } from '../../../../drivers/cloud.ts'

const rec = (name: string, address: string, reach?: HostRecord['reach']): HostRecord => ({
  name, site: name, driver: 'x', address, ssh: { host: address, port: 22, username: 'root', privateKeyPath: '/k' }, stateDir: '/s', guestBridge: 'br0', driverData: {}, ...(reach !== undefined ? { reach } : {})
})

t.test('extender ends send to public addresses across networks only', async t => {
  const local = rec('local1', '198.18.60.10', { network: 'local sc1', publicAddress: '198.18.232.1' })
  const local2 = rec('local2', '198.18.61.10', { network: 'local sc1', publicAddress: '198.18.232.1' })
  const aws1 = rec('aws1', '198.18.200.10', { network: 'ec2 aws us-east-1 vpc-1', publicAddress: '198.18.232.10' })
  const aws2 = rec('aws2', '198.18.200.11', { network: 'ec2 aws us-east-1 vpc-1', publicAddress: '198.18.232.11' })
  const eu = rec('eu1', '198.18.201.10', { network: 'ec2 aws eu-west-1 vpc-2', publicAddress: '198.18.232.12' })
  const plain = rec('plain', '198.18.62.10')
  t.equal(peerAddress(local, aws1), '198.18.232.10', 'a local site reaches an instance at its public address')
  t.equal(peerAddress(aws1, local), '198.18.232.1', 'the instance answers to the local site\'s NAT address')
  t.equal(peerAddress(local, local2), '198.18.61.10', 'two local sites: site addresses')
  t.equal(peerAddress(aws1, aws2), '198.18.200.11', 'one VPC: private addresses')
  t.equal(peerAddress(aws1, eu), '198.18.232.12', 'another region: public')
  t.equal(peerAddress(plain, aws1), '198.18.232.10', 'a host without reach still sends to the public address')
  t.equal(peerAddress(aws1, plain), '198.18.62.10', 'and is reached at its own address')
})

t.test('SUPERCLOUD_LOCAL_UPLINK', async t => {
  const ok = 'ns=sct1-inet,bridge=lan0,address=198.18.233.10/24,gateway=198.18.233.1,public=198.18.232.1'
  t.same(parseUplink(ok), { ns: 'sct1-inet', bridge: 'lan0', address: '198.18.233.10/24', gateway: '198.18.233.1', publicAddress: '198.18.232.1' })
  t.throws(() => parseUplink('ns=sct1-inet'), { code: 'SC_LOCAL_DRIVER' })
  t.throws(() => parseUplink(ok.replace('/24', '')), /prefix length/)
  t.throws(() => parseUplink(ok.replace('gateway=198.18.233.1', 'gateway=198.18.234.1')), /not on 198\.18\.233\.10\/24/)
  t.throws(() => parseUplink(`${ok},colour=red`), /unknown key/)
  t.throws(() => parseUplink(ok.replace('ns=sct1-inet', 'ns=a b')), /namespace name/)
  t.equal(uplinkPeerLink('sc3f2a'), 'sc3f2a-up')
  t.match(uplinkNftRules(), /oifname "up0" masquerade/)
})

t.test('the local driver builds sites with local hosts or none, not an ec2 site with a subnet', async t => {
  const sites = { lab: { name: 'lab', subnet: '198.18.60.0/24' }, aws: { name: 'aws', subnet: '198.18.200.0/24' }, spare: { name: 'spare', subnet: '198.18.61.0/24' } }
  const hosts = { local1: { site: 'lab', driver: 'local' }, aws1: { site: 'aws', driver: 'ec2' } }
  t.same(Object.keys(localSites(sites, hosts)), ['lab', 'spare'])
  t.same(Object.keys(localSites(sites, undefined)), ['lab', 'aws', 'spare'], 'without the hosts: all')
})
