import t from 'tap'
import { desiredIngress, ec2NetworkName, hostOptions, ingressChanges, normalizeCidr, ownInstanceFilters, ownTags, resourceName, spotInterruptionEvent } from '../../../../drivers/ec2/plan.ts'
import type { HostSpec } from '../../../../core/spec.ts'

const id = { name: 'demo', prefix: 'sc3f2a' }

t.test('names and tags', async t => {
  t.equal(resourceName(id), 'supercloud-demo-sc3f2a')
  t.same(ownTags(id, 'web1'), [{ Key: 'supercloud', Value: 'demo' }, { Key: 'supercloud:prefix', Value: 'sc3f2a' }, { Key: 'Name', Value: 'supercloud-demo-sc3f2a-web1' }, { Key: 'supercloud:host', Value: 'web1' }])
  const f = ownInstanceFilters(id, 'web1')
  t.same(f.map(x => x.Name), ['tag:supercloud', 'tag:supercloud:prefix', 'instance-state-name', 'tag:supercloud:host'])
  t.notOk(f[2]?.Values?.includes('terminated'), 'terminated instances are not ours any more')
})

t.test('security group rules', async t => {
  const want = desiredIngress(['203.0.113.5/32'], 'sg-1')
  t.same(want.map(p => `${p.IpProtocol ?? ''}/${p.FromPort ?? ''}-${p.ToPort ?? ''}`), ['tcp/22-22', 'udp/4789-4789', 'udp/1194-1257', 'tcp/49152-49215'])
  t.same(want[0]?.IpRanges, [{ CidrIp: '203.0.113.5/32' }], 'SSH from the operator only')
  t.same([want[2]?.IpRanges, want[2]?.UserIdGroupPairs], [[{ CidrIp: '203.0.113.5/32' }], [{ GroupId: 'sg-1' }]],
    'extenders (one port per extender) from the group and from the operator\'s address (its other sites\' gateways)')
  t.ok([want[1], want[3]].every(p => p?.IpRanges === undefined && p?.UserIdGroupPairs?.[0]?.GroupId === 'sg-1'), 'VXLAN and migration only from the group itself')
  t.same(ingressChanges([], want).revoke, [])
  t.equal(ingressChanges([], want).authorize.length, 5, 'one authorization per source')
  t.same(ingressChanges(want, want), { authorize: [], revoke: [] }, 'nothing to do when converged')
  const moved = ingressChanges(want, desiredIngress(['198.51.100.0/24'], 'sg-1'))
  t.same(moved.authorize, [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '198.51.100.0/24' }] },
    { IpProtocol: 'udp', FromPort: 1194, ToPort: 1257, IpRanges: [{ CidrIp: '198.51.100.0/24' }] }
  ])
  t.same(moved.revoke, [
    { IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '203.0.113.5/32' }] },
    { IpProtocol: 'udp', FromPort: 1194, ToPort: 1257, IpRanges: [{ CidrIp: '203.0.113.5/32' }] }
  ])
  const extra = ingressChanges([...want, { IpProtocol: 'tcp', FromPort: 80, ToPort: 80, IpRanges: [{ CidrIp: '0.0.0.0/0' }] }], want)
  t.equal(extra.revoke.length, 1, 'a rule someone added by hand is removed')
})

t.test('network names: one per endpoint, region and VPC', async t => {
  t.equal(ec2NetworkName(undefined, 'eu-west-1', 'vpc-1'), 'ec2 aws eu-west-1 vpc-1')
  t.not(ec2NetworkName(undefined, 'eu-west-1', 'vpc-1'), ec2NetworkName(undefined, 'us-east-1', 'vpc-1'), 'another region is another network')
  t.equal(ec2NetworkName('http://127.0.0.1:9', 'us-east-1', undefined), 'ec2 http://127.0.0.1:9 us-east-1 default-vpc')
})

t.test('CIDRs', async t => {
  t.equal(normalizeCidr('203.0.113.5'), '203.0.113.5/32')
  t.equal(normalizeCidr(' 10.0.0.0/8 '), '10.0.0.0/8')
  t.throws(() => normalizeCidr('300.1.1.1'), { code: 'SC_EC2_SPEC' })
  t.throws(() => normalizeCidr('1.2.3.4/33'), { code: 'SC_EC2_SPEC' })
  t.throws(() => normalizeCidr('example.com'), { code: 'SC_EC2_SPEC' })
})

t.test('host options', async t => {
  const base: HostSpec = { name: 'h', site: 'aws', driver: 'ec2', cpus: 2, memoryBytes: 1, hypervisor: { backend: 'qemu', accel: 'auto' } }
  const ok = { region: 'eu-west-1', ami: 'ami-0123456789abcdef0', instanceType: 'm5.large' }
  t.same(hostOptions({ ...base, ec2: ok }), ok)
  t.throws(() => hostOptions(base), { code: 'SC_EC2_SPEC', message: /needs an ec2: section/ })
  t.throws(() => hostOptions({ ...base, ec2: { ...ok, region: 'Europe' } }), { message: /not an AWS region/ })
  t.throws(() => hostOptions({ ...base, ec2: { ...ok, ami: 'debian-12' } }), { message: /not an AMI id/ })
  t.throws(() => hostOptions({ ...base, ec2: { ...ok, instanceType: 'large' } }), { message: /not an instance type/ })
  t.throws(() => hostOptions({ ...base, ec2: { ...ok, sshFrom: 'anywhere' } }), { code: 'SC_EC2_SPEC' })
  t.throws(() => hostOptions({ ...base, ec2: { ...ok, subnetId: 'sub' } }), { message: /not a subnet id/ })
  for (const type of ['t3.micro', 'cc2.8xlarge', 'm1.small', 'c5.metal', 'u-6tb1.metal']) t.doesNotThrow(() => hostOptions({ ...base, ec2: { ...ok, instanceType: type } }), type)
})

t.test('spot interruption notices become events', async t => {
  t.same(spotInterruptionEvent('web1', '{"action": "terminate", "time": "2017-09-18T08:22:00Z"}'),
    { type: 'host.interruption', host: 'web1', at: '2017-09-18T08:22:00.000Z', action: 'terminate' })
  t.equal(spotInterruptionEvent('web1', ''), undefined, 'no notice: nothing')
  t.equal(spotInterruptionEvent('web1', '<html>404 - Not Found</html>'), undefined)
  t.equal(spotInterruptionEvent('web1', '{"action":"reboot","time":"2017-09-18T08:22:00Z"}'), undefined)
  t.equal(spotInterruptionEvent('web1', '{"action":"stop","time":"soon"}'), undefined)
})
