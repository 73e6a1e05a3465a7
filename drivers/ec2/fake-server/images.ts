/** The fake EC2 server's images (AMIs) and subnets (one default VPC and subnet per region). */
import { Ec2ApiError, itemSet, strList, type QueryObject, type XmlNode } from './protocol.ts'
import type { FakeEc2State } from './state.ts'

export function describeImages (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const have = s.images.get(region) ?? new Set()
  const ids = strList(q.ImageId)
  for (const id of ids) {
    if (!/^ami-[0-9a-f]{8,17}$/.test(id)) throw new Ec2ApiError('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-...")`)
    if (!have.has(id)) throw new Ec2ApiError('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`)
  }
  const shown = ids.length > 0 ? ids : [...have]
  return [itemSet('imagesSet', shown.map(id => [
    ['imageId', id], ['imageLocation', `supercloud-test/debian-12-amd64-${id}`], ['imageState', 'available'],
    ['imageOwnerId', '136693071363'], ['isPublic', true], ['architecture', 'x86_64'], ['imageType', 'machine'],
    ['name', `debian-12-amd64-${id}`], ['rootDeviceType', 'ebs'], ['virtualizationType', 'hvm'], ['hypervisor', 'xen']
  ]))]
}

export function describeSubnets (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const v = s.vpcs.get(region)
  const ids = strList(q.SubnetId)
  for (const id of ids) if (id !== v?.subnetId) throw new Ec2ApiError('InvalidSubnetID.NotFound', `The subnet ID '${id}' does not exist`)
  return [itemSet('subnetSet', v === undefined ? [] : [[
    ['subnetId', v.subnetId], ['vpcId', v.vpcId], ['state', 'available'], ['cidrBlock', s.regions[region] ?? ''],
    ['availabilityZone', `${region}a`], ['availableIpAddressCount', 250], ['defaultForAz', true], ['mapPublicIpOnLaunch', true]
  ]])]
}
