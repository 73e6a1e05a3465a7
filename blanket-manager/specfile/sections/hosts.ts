/** `hosts:` of a spec: driver, site, size, hypervisor, and the local / ec2 / ssh specifics. */
import type { Accel, DriverName, HostSpec, SiteSpec } from '../../../core/spec.ts'
import { parseSize } from '../../../core/units.ts'
import { broadcastOf, cidrContains, formatCidr, formatIpv4, networkOf, parseIpv4 } from '../../../core/ipv4.ts'
import type { SpecPath } from '../locate.ts'
import { entries, isObject, str, tryParse, unknownRef, type NormalizeContext, type Obj } from '../raw.ts'
import type { SitesResult } from './sites.ts'
import { normalizeEc2 } from './ec2.ts'
import { hostKeyFingerprint } from '../../../core/host-keys.ts'
import { sshAddressProblem, sshUserProblem } from '../../../core/ssh-values.ts'

const DEFAULT_HOST_CPUS = 2
const DEFAULT_HOST_MEMORY = 2 * 1024 ** 3
const DEFAULT_SSH_PORT = 22
const DEFAULT_SSH_USER = 'root'

export function normalizeHosts (rawHosts: Obj, rawSites: Obj, sites: SitesResult, ctx: NormalizeContext): Record<string, HostSpec> {
  const hosts: Record<string, HostSpec> = {}
  for (const [hostName, v] of entries(rawHosts)) {
    const at: SpecPath = ['hosts', hostName]
    ctx.checkName('host', hostName, at)
    if (!isObject(v)) continue
    const host = hostBase(hostName, v, at, rawSites, sites, ctx)
    hosts[hostName] = host
    if (host.driver !== 'ec2' && v.ec2 !== undefined) ctx.report([...at, 'ec2'], "ec2 settings are only used with 'driver: ec2'", 'key')
    if (host.driver === 'local') localHost(host, v, at, sites, ctx)
    else if (host.driver === 'ec2') ec2Host(host, v, at, ctx)
    else sshHost(host, v, at, ctx)
  }
  ec2SiteRule(sites.sites, hosts, ctx)
  return hosts
}

/** The fields every driver shares: driver, site, cpus, memory, hypervisor. */
function hostBase (hostName: string, v: Obj, at: SpecPath, rawSites: Obj, sites: SitesResult, ctx: NormalizeContext): HostSpec {
  const { report } = ctx
  const driver: DriverName = v.driver === 'ssh' || v.driver === 'ec2' ? v.driver : 'local'
  const siteName = str(v.site) ?? ''
  if (siteName !== '' && !(siteName in rawSites)) {
    report([...at, 'site'], unknownRef('site', siteName, Object.keys(rawSites)))
  } else if (siteName !== '' && driver === 'local' && (v.driver === undefined || v.driver === 'local') && !sites.nets.has(siteName)) {
    const rs = rawSites[siteName]
    if (!isObject(rs) || rs.subnet === undefined) report([...at, 'site'], `local hosts need a site with a subnet; site '${siteName}' has none`)
  }
  let memoryBytes = DEFAULT_HOST_MEMORY
  if (v.memory !== undefined) {
    const m = tryParse(parseSize, v.memory)
    if (m === 0) report([...at, 'memory'], 'must be above 0')
    else if (m !== undefined) memoryBytes = m
  }
  const hv = isObject(v.hypervisor) ? v.hypervisor : {}
  const accel: Accel = hv.accel === 'kvm' || hv.accel === 'tcg' ? hv.accel : 'auto'
  const host: HostSpec = {
    name: hostName,
    site: siteName,
    driver,
    cpus: typeof v.cpus === 'number' ? v.cpus : DEFAULT_HOST_CPUS,
    memoryBytes,
    hypervisor: { backend: hv.backend === 'xen' ? 'xen' : 'qemu', accel }
  }
  if (hv.backend === 'xen') {
    if (hv.accel !== undefined && hv.accel !== 'auto') report([...at, 'hypervisor', 'accel'], `accel is for the qemu backend; a xen host runs its guests as Xen domains (remove accel: ${String(hv.accel)})`, 'key')
    if (driver === 'ec2') report([...at, 'hypervisor', 'backend'], 'the ec2 driver cannot run Xen yet: an EC2 instance other than *.metal is a Nitro (KVM) guest without nested virtualization, so Xen cannot be its hypervisor; use backend qemu')
  }
  return host
}

function localHost (host: HostSpec, v: Obj, at: SpecPath, sites: SitesResult, ctx: NormalizeContext): void {
  const { report } = ctx
  if (v.ssh !== undefined) report([...at, 'ssh'], "ssh settings are only used with 'driver: ssh'", 'key')
  const local: NonNullable<HostSpec['local']> = {}
  host.local = local
  const siteName = host.site
  const addr = typeof v.address === 'string' ? parseIpv4(v.address) : undefined
  const sub = sites.nets.get(siteName)
  if (addr === undefined || sub === undefined) return
  const aAt: SpecPath = [...at, 'address']
  const a = formatIpv4(addr)
  if (!cidrContains(sub, addr)) report(aAt, `${a} is outside the subnet ${formatCidr(sub)} of site '${siteName}'`)
  else if (addr === networkOf(sub) || addr === broadcastOf(sub)) report(aAt, `${a} is the ${addr === networkOf(sub) ? 'network' : 'broadcast'} address of ${formatCidr(sub)}`)
  else if (addr === sites.gateways.get(siteName)) report(aAt, `${a} is the gateway of site '${siteName}'; pick another address`)
  else if (ctx.claim(addr, `host '${host.name}'`, aAt)) local.address = a
}

function ec2Host (host: HostSpec, v: Obj, at: SpecPath, { report }: NormalizeContext): void {
  if (v.address !== undefined) report([...at, 'address'], "'address' is for local hosts; EC2 gives an ec2 host its addresses", 'key')
  if (v.ssh !== undefined) report([...at, 'ssh'], "ssh settings are only used with 'driver: ssh' (an ec2 host's SSH user is ec2.user)", 'key')
  if (v.ec2 === undefined) report(at, "hosts with 'driver: ec2' need an 'ec2' section with region, ami and instanceType", 'key')
  if (isObject(v.ec2)) host.ec2 = normalizeEc2(v.ec2, [...at, 'ec2'], report)
}

function sshHost (host: HostSpec, v: Obj, at: SpecPath, { report, resolvePath }: NormalizeContext): void {
  if (v.address !== undefined) report([...at, 'address'], "'address' is for local hosts; ssh hosts are reached at ssh.address", 'key')
  if (v.ssh === undefined) report(at, "hosts with 'driver: ssh' need an 'ssh' section with address and key", 'key')
  if (!isObject(v.ssh)) return
  const s = v.ssh
  host.ssh = {
    address: str(s.address) ?? '',
    port: typeof s.port === 'number' ? s.port : DEFAULT_SSH_PORT,
    user: str(s.user) ?? DEFAULT_SSH_USER,
    key: resolvePath(str(s.key) ?? '')
  }
  const addressProblem = host.ssh.address !== '' ? sshAddressProblem(host.ssh.address) : undefined
  if (addressProblem !== undefined) report([...at, 'ssh', 'address'], addressProblem)
  const userProblem = sshUserProblem(host.ssh.user)
  if (userProblem !== undefined) report([...at, 'ssh', 'user'], userProblem)
  const bridge = str(s.guestBridge)
  if (bridge !== undefined) host.ssh.guestBridge = bridge
  const hostKey = str(s.hostKey)
  if (hostKey !== undefined) {
    if (hostKeyFingerprint(hostKey) === undefined) report([...at, 'ssh', 'hostKey'], "must be the host's OpenSSH public key line (e.g. the contents of /etc/ssh/ssh_host_ed25519_key.pub) or its fingerprint as `ssh-keygen -lf` prints it (SHA256: and 43 base64 characters)")
    else host.ssh.hostKey = hostKey.trim()
  }
}

/** An ec2 host is not on a site subnet (EC2 gives its addresses): it does not share a site with local hosts. */
function ec2SiteRule (sites: Record<string, SiteSpec>, hosts: Record<string, HostSpec>, { report }: NormalizeContext): void {
  for (const [siteName, site] of Object.entries(sites)) {
    const members = Object.values(hosts).filter(h => h.site === siteName)
    const local = members.find(h => h.driver === 'local')
    for (const h of members.filter(h => h.driver === 'ec2')) {
      if (local !== undefined) report(['hosts', h.name, 'site'], `site '${siteName}' has local host '${local.name}'; put ec2 hosts in a site of their own (EC2 gives their addresses${site.subnet !== undefined ? `, not ${site.subnet}` : ''})`)
    }
  }
}
