/** The HostRecord of an EC2 instance, and what the driver keeps in its driverData. */
import type { Instance } from '@aws-sdk/client-ec2'
import type { DriverContext, HostRecord, SshEndpoint } from '../cloud.ts'
import type { Ec2HostOptions, HostSpec } from '../../core/spec.ts'
import { HOST_GUEST_BRIDGE, hostStateDir } from '../host-bootstrap/cloud-init.ts'
import { ec2NetworkName } from './plan.ts'

/** What the driver keeps in HostRecord.driverData. */
export interface Ec2HostData {
  region: string
  endpoint?: string
  instanceId: string
  instanceType: string
  ami: string
  spot: boolean
  publicIp?: string
  privateIp: string
  /** What the bootstrap found: kvm when /dev/kvm exists, else tcg (the Blanket bootstrap still probes). */
  hypervisor: 'kvm' | 'tcg'
  hypervisorReason: string
}

/** The record of a running instance; SSH through `ip netns exec sshNetns socat` when given. */
export function recordOf (ctx: DriverContext, spec: HostSpec, o: Ec2HostOptions, inst: Instance, endpoint: string | undefined, sshNetns: string | undefined): HostRecord {
  const privateIp = inst.PrivateIpAddress ?? ''
  const publicIp = inst.PublicIpAddress
  const sshHost = publicIp ?? privateIp
  const ssh: SshEndpoint = { host: sshHost, port: 22, username: o.user ?? 'root', privateKeyPath: ctx.keyPath }
  if (sshNetns !== undefined) ssh.proxyCommand = ['ip', 'netns', 'exec', sshNetns, 'socat', '-', `TCP:${sshHost}:22`]
  const data: Ec2HostData = {
    region: o.region, instanceId: inst.InstanceId ?? '', instanceType: o.instanceType, ami: o.ami, spot: o.spot === true,
    privateIp, hypervisor: 'tcg', hypervisorReason: 'not reported yet'
  }
  if (endpoint !== undefined) data.endpoint = endpoint
  if (publicIp !== undefined) data.publicIp = publicIp
  const record: HostRecord = { name: spec.name, site: spec.site, driver: 'ec2', address: privateIp, ssh, stateDir: hostStateDir(ctx.name, spec.name), guestBridge: HOST_GUEST_BRIDGE, driverData: { ...data } }
  // Instances of one VPC reach each other at their private addresses; anything else at the public one.
  if (publicIp !== undefined) record.reach = { network: ec2NetworkName(endpoint, o.region, inst.VpcId), publicAddress: publicIp }
  return record
}
