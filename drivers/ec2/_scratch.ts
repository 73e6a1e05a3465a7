import { EC2Client, DescribeImagesCommand, ImportKeyPairCommand, CreateSecurityGroupCommand, AuthorizeSecurityGroupIngressCommand, DescribeSecurityGroupsCommand, RunInstancesCommand, DescribeInstancesCommand, TerminateInstancesCommand, DescribeKeyPairsCommand } from '@aws-sdk/client-ec2'
import { FakeEc2Server, FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, FAKE_AMI } from './fake-server/server.ts'
import { registerPrefix, sweepPrefix } from '../../test/helpers/sweep-lib.ts'
import { readFileSync } from 'node:fs'
const prefix = 'sct' + Math.random().toString(16).slice(2, 6)
registerPrefix(prefix)
const srv = new FakeEc2Server({ prefix, dir: '/tmp/ec2dbg/' + prefix })
try {
  const endpoint = await srv.start()
  const c = new EC2Client({ region: 'us-east-1', endpoint, credentials: { accessKeyId: FAKE_ACCESS_KEY_ID, secretAccessKey: FAKE_SECRET_ACCESS_KEY } })
  console.log(JSON.stringify((await c.send(new DescribeImagesCommand({ ImageIds: [FAKE_AMI] }))).Images))
  const pub = readFileSync('/tmp/ec2dbg/' + prefix + '/key/id_ed25519.pub')
  console.log(await c.send(new ImportKeyPairCommand({ KeyName: 'k1', PublicKeyMaterial: pub, TagSpecifications: [{ ResourceType: 'key-pair', Tags: [{ Key: 'supercloud', Value: 'x' }] }] })))
  console.log(JSON.stringify((await c.send(new DescribeKeyPairsCommand({ Filters: [{ Name: 'tag:supercloud', Values: ['x'] }] }))).KeyPairs))
  const sg = await c.send(new CreateSecurityGroupCommand({ GroupName: 'g', Description: 'd', TagSpecifications: [{ ResourceType: 'security-group', Tags: [{ Key: 'supercloud', Value: 'x' }] }] }))
  console.log(sg.GroupId)
  await c.send(new AuthorizeSecurityGroupIngressCommand({ GroupId: sg.GroupId, IpPermissions: [{ IpProtocol: 'tcp', FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: '127.0.0.1/32' }] }, { IpProtocol: 'udp', FromPort: 4789, ToPort: 4789, UserIdGroupPairs: [{ GroupId: sg.GroupId }] }] }))
  console.log(JSON.stringify((await c.send(new DescribeSecurityGroupsCommand({ GroupIds: [sg.GroupId!] }))).SecurityGroups, null, 1))
  const r = await c.send(new RunInstancesCommand({ ImageId: FAKE_AMI, InstanceType: 't3.micro', MinCount: 1, MaxCount: 1, KeyName: 'k1', SecurityGroupIds: [sg.GroupId!], UserData: Buffer.from('#!/bin/sh\necho hi\n').toString('base64'), InstanceMarketOptions: { MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time' } }, TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'supercloud', Value: 'x' }] }] }))
  console.log(JSON.stringify(r.Instances, null, 1))
  for (let k = 0; k < 50; k++) {
    const d = await c.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag:supercloud', Values: ['x'] }] }))
    const i = d.Reservations?.[0]?.Instances?.[0]
    console.log(i?.State, i?.PublicIpAddress, i?.PrivateIpAddress)
    if (i?.State?.Name === 'running') break
    await new Promise(r => setTimeout(r, 300))
  }
  await srv.settled()
  const id = r.Instances![0]!.InstanceId!
  console.log(await c.send(new TerminateInstancesCommand({ InstanceIds: [id] })))
  try { await c.send(new DescribeImagesCommand({ ImageIds: ['ami-0000000000000000a'] })) } catch (e: any) { console.log('ERR', e.name, e.message, e.$metadata) }
  console.log(srv.requests)
} finally {
  await srv.stop()
  sweepPrefix(prefix)
}
