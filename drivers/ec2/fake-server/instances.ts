/**
 * The fake EC2 server's instances as the API sees them: RunInstances (with the tests' quota
 * and unreachable injections), DescribeInstances, TerminateInstances, CreateTags, and their XML.
 * The host behind each instance is instance-host.ts.
 */
import { Ec2ApiError, filters, itemSet, list, obj, str, strList, tagSet, tagSpecs, type QueryObject, type XmlNode } from './protocol.ts'
import { hex, STATE_CODES, type FakeEc2State, type FakeInstance, type InstanceRuntime, type InstanceStateName } from './state.ts'
import { matchFilters } from './filters.ts'
import { keysOf } from './key-pairs.ts'
import { group } from './security-groups.ts'
import { provision, terminate } from './instance-host.ts'
import { spotPriceOf } from './spot.ts'

export function runInstances (s: FakeEc2State, region: string, q: QueryObject): Array<XmlNode | undefined> {
  const token = str(q.ClientToken)
  if (token !== undefined) {
    const same = [...s.instancesById.values()].filter(i => i.region === region && i.clientToken === token)
    if (same.length > 0) return reservationXml(s, same[0]?.reservationId ?? '', same)
  }
  const imageId = str(q.ImageId) ?? ''
  if (!/^ami-[0-9a-f]{8,17}$/.test(imageId)) throw new Ec2ApiError('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`)
  if (s.images.get(region)?.has(imageId) !== true) throw new Ec2ApiError('InvalidAMIID.NotFound', `The image id '[${imageId}]' does not exist`)
  const instanceType = str(q.InstanceType) ?? 'm1.small'
  const keyName = str(q.KeyName) ?? ''
  if (keyName !== '' && !keysOf(s, region).has(keyName)) throw new Ec2ApiError('InvalidKeyPair.NotFound', `The key pair '${keyName}' does not exist`)
  const groupIds = strList(q.SecurityGroupId)
  for (const id of groupIds) group(s, region, id)
  const vpc = s.vpcs.get(region)
  const subnetId = str(q.SubnetId) ?? vpc?.subnetId ?? ''
  if (subnetId !== vpc?.subnetId) throw new Ec2ApiError('InvalidSubnetID.NotFound', `The subnet ID '${subnetId}' does not exist`)
  const min = Number(str(q.MinCount) ?? '1')
  const max = Number(str(q.MaxCount) ?? String(min))
  if (!(min >= 1 && max >= min)) throw new Ec2ApiError('InvalidParameterValue', 'MinCount and MaxCount must be at least 1, MaxCount >= MinCount')
  if (s.quotaFailures > 0) {
    s.quotaFailures--
    throw new Ec2ApiError('InstanceLimitExceeded', `You have requested more instances (${max}) than your current instance limit of 0 allows for the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.`)
  }
  const market = obj(q.InstanceMarketOptions)
  const spot = str(market.MarketType) === 'spot'
  const maxPrice = str(obj(market.SpotOptions).MaxPrice)
  const price = spot ? spotPriceOf(s, region, instanceType) : undefined
  if (maxPrice !== undefined && price !== undefined && Number(maxPrice) < price) {
    throw new Ec2ApiError('SpotMaxPriceTooLow', `Your Spot request price of ${maxPrice} is lower than the minimum required Spot request fulfillment price of ${price.toFixed(6)}.`)
  }
  if (spot && s.spotCapacityOut.has(`${region}/${instanceType}`)) throw new Ec2ApiError('InsufficientInstanceCapacity', `There is no Spot capacity available that matches your request (${instanceType}).`)
  const userData = str(q.UserData)
  const tags = tagSpecs(q, 'instance')
  const reservationId = `r-${hex(17)}`
  const made: FakeInstance[] = []
  for (let n = 0; n < max; n++) {
    const inst: FakeInstance = {
      id: `i-${hex(17)}`, region, reservationId, imageId, instanceType, keyName, groupIds, subnetId, az: str(obj(q.Placement).AvailabilityZone) ?? `${region}a`,
      tags: { ...tags }, state: 'pending', launchTime: new Date().toISOString(), spot, unreachable: false, console: ''
    }
    if (token !== undefined) inst.clientToken = token
    if (userData !== undefined) inst.userData = userData
    if (s.unreachableLaunches > 0) { s.unreachableLaunches--; inst.unreachable = true }
    s.instancesById.set(inst.id, inst)
    const rt: InstanceRuntime = {}
    s.runtime.set(inst.id, rt)
    rt.provisioning = provision(s, inst, rt)
    made.push(inst)
  }
  return reservationXml(s, reservationId, made)
}

function instanceXml (s: FakeEc2State, i: FakeInstance): Array<XmlNode | undefined> {
  const group = (id: string): Array<XmlNode | undefined> => [['groupId', id], ['groupName', s.groups.get(id)?.name ?? '']]
  return [
    ['instanceId', i.id], ['imageId', i.imageId],
    ['instanceState', [['code', STATE_CODES[i.state]], ['name', i.state]]],
    ['privateDnsName', i.privateIp !== undefined ? `ip-${i.privateIp.replace(/\./g, '-')}.${i.region}.compute.internal` : ''],
    ['dnsName', ''],
    ['keyName', i.keyName], ['amiLaunchIndex', 0], ['instanceType', i.instanceType], ['launchTime', i.launchTime],
    ['placement', [['availabilityZone', i.az], ['tenancy', 'default']]],
    ['monitoring', [['state', 'disabled']]],
    i.state === 'terminated' ? undefined : ['subnetId', i.subnetId],
    i.state === 'terminated' ? undefined : ['vpcId', s.vpcs.get(i.region)?.vpcId ?? ''],
    i.privateIp !== undefined && i.state !== 'terminated' ? ['privateIpAddress', i.privateIp] : undefined,
    i.publicIp !== undefined && i.state !== 'terminated' ? ['ipAddress', i.publicIp] : undefined,
    itemSet('groupSet', i.groupIds.map(group)),
    i.stateReason !== undefined ? ['stateReason', [['code', i.stateReason.code], ['message', i.stateReason.message]]] : undefined,
    i.stateReason !== undefined ? ['reason', i.stateReason.message] : undefined,
    ['architecture', 'x86_64'], ['rootDeviceType', 'ebs'], ['rootDeviceName', '/dev/xvda'],
    i.spot ? ['instanceLifecycle', 'spot'] : undefined,
    i.spot ? ['spotInstanceRequestId', `sir-${i.id.slice(2, 10)}`] : undefined,
    i.clientToken !== undefined ? ['clientToken', i.clientToken] : undefined,
    ['virtualizationType', 'hvm'], ['hypervisor', 'xen'],
    tagSet(i.tags)
  ]
}

function reservationXml (s: FakeEc2State, reservationId: string, instances: FakeInstance[]): XmlNode[] {
  return [['reservationId', reservationId], ['ownerId', '123456789012'], ['groupSet', []], itemSet('instancesSet', instances.map(i => instanceXml(s, i)))]
}

export function describeInstances (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const ids = strList(q.InstanceId)
  for (const id of ids) {
    const i = s.instancesById.get(id)
    if (i === undefined || i.region !== region) throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
  }
  const fs = filters(q)
  const shown = [...s.instancesById.values()].filter(i => i.region === region && (ids.length === 0 || ids.includes(i.id)) &&
    matchFilters(fs, { 'instance-state-name': [i.state], 'instance-id': [i.id], 'image-id': [i.imageId], 'instance-type': [i.instanceType], 'key-name': [i.keyName] }, i.tags))
  const byReservation = new Map<string, FakeInstance[]>()
  for (const i of shown) byReservation.set(i.reservationId, [...(byReservation.get(i.reservationId) ?? []), i])
  return [itemSet('reservationSet', [...byReservation].map(([rid, is]) => [
    ['reservationId', rid], ['ownerId', '123456789012'], ['groupSet', []], itemSet('instancesSet', is.map(i => instanceXml(s, i)))
  ]))]
}

export async function terminateInstances (s: FakeEc2State, region: string, q: QueryObject): Promise<XmlNode[]> {
  const ids = strList(q.InstanceId)
  const found: FakeInstance[] = []
  for (const id of ids) {
    const i = s.instancesById.get(id)
    if (i === undefined || i.region !== region) throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
    found.push(i)
  }
  const before = found.map(i => i.state)
  // Like EC2, the answer comes at once (shutting-down); the instance is gone a little later.
  for (const i of found) void terminate(s, i).catch(err => { process.emitWarning(`fake EC2 server: terminate ${i.id}: ${String(err)}`) })
  return [itemSet('instancesSet', found.map((i, n) => [
    ['instanceId', i.id],
    ['currentState', [['code', STATE_CODES[i.state]], ['name', i.state]]],
    ['previousState', [['code', STATE_CODES[before[n] as InstanceStateName]], ['name', before[n] as string]]]
  ]))]
}

/** GetConsoleOutput: what the instance printed so far, base64 (as EC2 answers; empty before boot). */
export function getConsoleOutput (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const id = str(q.InstanceId) ?? ''
  const i = s.instancesById.get(id)
  if (i === undefined || i.region !== region) throw new Ec2ApiError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
  return [['instanceId', i.id], ['timestamp', new Date().toISOString()], ['output', Buffer.from(i.console, 'utf8').toString('base64')]]
}

export function createTags (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const ids = strList(q.ResourceId)
  const tags = Object.fromEntries(list(q.Tag).map(t => [str(obj(t).Key) ?? '', str(obj(t).Value) ?? '']))
  for (const id of ids) {
    const target = s.instancesById.get(id)?.tags ?? s.groups.get(id)?.tags ?? [...keysOf(s, region).values()].find(k => k.id === id)?.tags
    if (target === undefined) throw new Ec2ApiError('InvalidID', `The ID '${id}' is not valid`)
    Object.assign(target, tags)
  }
  return [['return', true]]
}
