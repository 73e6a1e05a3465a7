/** The fake EC2 server's security groups: create, describe, ingress rules, delete. */
import { Ec2ApiError, filters, itemSet, list, obj, str, strList, tagSet, tagSpecs, type QueryObject, type XmlNode } from './protocol.ts'
import { hex, type FakeEc2State, type Group, type Perm } from './state.ts'
import { matchFilters } from './filters.ts'

export function createSecurityGroup (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const name = str(q.GroupName) ?? ''
  const description = str(q.GroupDescription) ?? ''
  if (name === '' || description === '') throw new Ec2ApiError('MissingParameter', 'The request must contain the parameters GroupName and GroupDescription')
  const vpcId = str(q.VpcId) ?? s.vpcs.get(region)?.vpcId ?? ''
  if (vpcId !== s.vpcs.get(region)?.vpcId) throw new Ec2ApiError('InvalidVpcID.NotFound', `The vpc ID '${vpcId}' does not exist`)
  if ([...s.groups.values()].some(g => g.region === region && g.vpcId === vpcId && g.name === name)) {
    throw new Ec2ApiError('InvalidGroup.Duplicate', `The security group '${name}' already exists for VPC '${vpcId}'`)
  }
  const g: Group = { id: `sg-${hex(17)}`, name, description, vpcId, region, tags: tagSpecs(q, 'security-group'), ingress: [] }
  s.groups.set(g.id, g)
  return [['return', true], ['groupId', g.id]]
}

export function group (s: FakeEc2State, region: string, id: string | undefined): Group {
  const g = id !== undefined ? s.groups.get(id) : undefined
  if (g === undefined || g.region !== region) throw new Ec2ApiError('InvalidGroup.NotFound', `The security group '${id ?? ''}' does not exist`)
  return g
}

export function describeSecurityGroups (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const ids = strList(q.GroupId)
  for (const id of ids) group(s, region, id)
  const names = strList(q.GroupName)
  const shown = [...s.groups.values()].filter(g => g.region === region &&
    (ids.length === 0 || ids.includes(g.id)) && (names.length === 0 || names.includes(g.name)) &&
    matchFilters(filters(q), { 'group-name': [g.name], 'group-id': [g.id], 'vpc-id': [g.vpcId] }, g.tags))
  if (names.length > 0 && shown.length === 0) throw new Ec2ApiError('InvalidGroup.NotFound', `The security group '${names.join(', ')}' does not exist in default VPC`)
  return [itemSet('securityGroupInfo', shown.map(g => [
    ['ownerId', '123456789012'], ['groupId', g.id], ['groupName', g.name], ['groupDescription', g.description], ['vpcId', g.vpcId],
    itemSet('ipPermissions', g.ingress.map(p => [
      ['ipProtocol', p.proto], p.proto === '-1' ? undefined : ['fromPort', p.from], p.proto === '-1' ? undefined : ['toPort', p.to],
      itemSet('groups', p.groups.map(id => [['groupId', id], ['userId', '123456789012']])),
      itemSet('ipRanges', p.cidrs.map(c => [['cidrIp', c]])),
      ['ipv6Ranges', []], ['prefixListIds', []]
    ])),
    itemSet('ipPermissionsEgress', [[['ipProtocol', '-1'], ['groups', []], itemSet('ipRanges', [[['cidrIp', '0.0.0.0/0']]]), ['ipv6Ranges', []], ['prefixListIds', []]]]),
    tagSet(g.tags)
  ]))]
}

export function changeIngress (s: FakeEc2State, region: string, q: QueryObject, how: 'authorize' | 'revoke'): XmlNode[] {
  const g = group(s, region, str(q.GroupId))
  for (const raw of list(q.IpPermissions)) {
    const p = obj(raw)
    const proto = str(p.IpProtocol) ?? ''
    if (!['tcp', 'udp', 'icmp', '-1'].includes(proto)) throw new Ec2ApiError('InvalidParameterValue', `Invalid value '${proto}' for IP protocol`)
    const from = Number(str(p.FromPort) ?? '-1')
    const to = Number(str(p.ToPort) ?? '-1')
    const cidrs = list(p.IpRanges).map(r => str(obj(r).CidrIp) ?? '')
    const groups = list(p.Groups).map(r => str(obj(r).GroupId) ?? '')
    for (const c of cidrs) if (!/^\d+\.\d+\.\d+\.\d+\/\d+$/.test(c)) throw new Ec2ApiError('InvalidParameterValue', `CIDR block ${c} is malformed`)
    for (const id of groups) group(s, region, id)
    for (const source of [...cidrs.map(c => ({ c })), ...groups.map(id => ({ id }))]) {
      const i = g.ingress.findIndex(e => e.proto === proto && e.from === from && e.to === to &&
        ('c' in source ? e.cidrs.includes(source.c) : e.groups.includes(source.id)))
      if (how === 'authorize') {
        if (i >= 0) throw new Ec2ApiError('InvalidPermission.Duplicate', `the specified rule "peer: ${'c' in source ? source.c : source.id}, ${proto.toUpperCase()}, from port: ${from}, to port: ${to}, ALLOW" already exists`)
        let e = g.ingress.find(x => x.proto === proto && x.from === from && x.to === to)
        if (e === undefined) { e = { proto, from, to, cidrs: [], groups: [] }; g.ingress.push(e) }
        if ('c' in source) e.cidrs.push(source.c); else e.groups.push(source.id)
      } else {
        if (i < 0) throw new Ec2ApiError('InvalidPermission.NotFound', 'The specified rule does not exist in this security group.')
        const e = g.ingress[i] as Perm
        if ('c' in source) e.cidrs = e.cidrs.filter(c => c !== source.c); else e.groups = e.groups.filter(x => x !== source.id)
        if (e.cidrs.length === 0 && e.groups.length === 0) g.ingress.splice(i, 1)
      }
    }
  }
  return [['return', true]]
}

export function deleteSecurityGroup (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const g = group(s, region, str(q.GroupId))
  const users = [...s.instancesById.values()].filter(i => i.state !== 'terminated' && i.groupIds.includes(g.id))
  if (users.length > 0) throw new Ec2ApiError('DependencyViolation', `resource ${g.id} has a dependent object`)
  const referencing = [...s.groups.values()].filter(o => o.id !== g.id && o.ingress.some(p => p.groups.includes(g.id)))
  if (referencing.length > 0) throw new Ec2ApiError('DependencyViolation', `resource ${g.id} has a dependent object`)
  s.groups.delete(g.id)
  return [['return', true]]
}
