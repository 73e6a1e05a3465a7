/**
 * Host firewalls from the controller (issue 14 item 3): what each host admits follows from the
 * state's hosts and the VirtualWire endpoints they carry (firewallFacts, pure); the rules are
 * made by firewall/rules.ts and installed through the host setup's firewall port (SSH + nft on
 * real hosts; absent in in-memory tests). Installed by `up` once hosts exist and again once the
 * wires are in place; VXLAN peers are admitted ahead of endpoint writes (a migration's, a
 * `wire connect`'s); removed with the host (`down`).
 */
import type { DriverContext, HostRecord } from '../../drivers/cloud.ts'
import { mapLimited } from '../../core/concurrency.ts'
import { HostKeyMismatchError, SupercloudError } from '../../core/errors.ts'
import { firstHostOf, formatIpv4, parseCidr } from '../../core/ipv4.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import { parseEndpointAddress, type EndpointWrite } from '../../virtualwire/topology/compile.ts'
import type { EndpointConfig } from '../../virtualwire/types.ts'
import { FirewallError } from '../firewall/apply.ts'
import { admitPeersRuleset, hostFirewallRuleset, type HostFirewallFacts } from '../firewall/rules.ts'
import type { ControllerCore } from './components.ts'
import type { HostAgent } from './sessions.ts'
import { peerAddress } from './wiring.ts'

export interface FirewallFactsInput {
  prefix: string
  self: HostRecord
  /** The supercloud's other hosts. */
  others: HostRecord[]
  /** Where the driver's SSH comes from ('any' when it cannot be known). */
  sshFrom: 'any' | string[]
  /** The host's endpoints, from each topology that counts (wanted, current). */
  endpoints: EndpointConfig[][]
}

/** What one host admits: the other hosts at every address their packets may carry, the sisters of its encapsulated endpoints. */
export function firewallFacts (i: FirewallFactsInput): HostFirewallFacts {
  const hosts = i.others.flatMap(o => [o.address, peerAddress(i.self, o)])
  const vxlanPeers = i.endpoints.flat().filter(e => e.remote.ip !== e.local.ip).map(e => e.remote.ip)
  return { prefix: i.prefix, sshFrom: i.sshFrom, hosts: [...new Set(hosts)].sort(), vxlanPeers: [...new Set(vxlanPeers)].sort() }
}

/** Where the local driver's SSH reaches a host from: the site's gateway (its ProxyCommand runs in the site namespace). */
export function localSshSource (site: { subnet?: string, gateway?: string } | undefined): 'any' | string[] {
  if (site?.gateway !== undefined) return [site.gateway]
  const c = site?.subnet !== undefined ? parseCidr(site.subnet) : undefined
  return c !== undefined ? [formatIpv4(firstHostOf(c))] : 'any'
}

/**
 * Which host admits which new VXLAN peers for endpoint writes: a created or re-pointed
 * endpoint's host admits its sister, and the sister's host (found by address) admits it.
 */
export function admissions (writes: EndpointWrite[], recs: HostRecord[]): Map<string, Set<string>> {
  const byAddress = (ip: string): HostRecord | undefined => recs.find(r => r.address === ip || r.reach?.publicAddress === ip)
  const add = new Map<string, Set<string>>()
  const push = (host: string, ip: string): void => { const s = add.get(host) ?? new Set(); s.add(ip); add.set(host, s) }
  for (const w of writes) {
    const text = w.file === 'create' ? w.line.split(' ')[2] : /^\d+$/.test(w.file) ? w.line : undefined
    const remote = text !== undefined ? parseEndpointAddress(text) : undefined
    const self = recs.find(r => r.name === w.host)
    if (remote === undefined || self === undefined || remote.ip === self.address) continue
    push(self.name, remote.ip)
    const sister = byAddress(remote.ip)
    if (sister !== undefined) push(sister.name, peerAddress(sister, self))
  }
  return add
}

export class HostFirewalls<A extends HostAgent> {
  constructor (private readonly c: ControllerCore<A>) {}

  /** Whether hosts get firewalls here (the host setup has a firewall port). */
  enabled (): boolean { return this.c.hosts.firewall !== undefined }

  /** Hosts that get a firewall: ready and recorded (a Xen dom0 too: its image ships nft). */
  private hosts (): HostRecord[] {
    return this.c.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined).map(h => h.record as HostRecord)
  }

  /** Installs every host's firewall; `endpoints`: the topologies whose peers are admitted (each host -> its endpoints). */
  async sync (ctx: DriverContext, endpoints: Array<Record<string, EndpointConfig[]>>, progress: (ev: ProgressEvent) => void): Promise<void> {
    const port = this.c.hosts.firewall
    if (port === undefined) return
    const yes = this.hosts()
    const all = this.c.store.hosts().flatMap(h => h.record !== undefined ? [h.record] : [])
    await mapLimited(yes, this.c.hostConcurrency, async self => {
      const facts = firewallFacts({
        prefix: ctx.prefix,
        self,
        others: all.filter(o => o.name !== self.name),
        sshFrom: self.driver === 'local' ? localSshSource(ctx.sites[self.site]) : 'any',
        endpoints: endpoints.map(e => e[self.name] ?? [])
      })
      const ruleset = hostFirewallRuleset(facts)
      let r: 'installed' | 'unchanged'
      try {
        r = await port.install(self.name, ctx.prefix, ruleset, {})
      } catch (err) {
        // A host `up` holds (unreachable) keeps its rules until it is back; nft refusing, or another host key, stops `up`.
        if (err instanceof FirewallError || err instanceof HostKeyMismatchError || !(err instanceof SupercloudError)) throw err
        progress({ subject: `host ${self.name}`, phase: 'firewall', message: `firewall not updated: ${err.message}` })
        return
      }
      if (r === 'installed') progress({ subject: `host ${self.name}`, phase: 'firewall', message: `nftables table ${'supercloud_' + ctx.prefix}: ${facts.hosts.length} host address(es), ${facts.vxlanPeers.length} VXLAN peer(s)` })
    })
  }

  /** Ahead of endpoint writes, the new peers they need admitted (admissions) on each host concerned. */
  async admit (writes: EndpointWrite[]): Promise<void> {
    const port = this.c.hosts.firewall
    if (port === undefined) return
    const prefix = this.c.store.prefix()
    const add = admissions(writes, this.c.store.hosts().flatMap(h => h.record !== undefined ? [h.record] : []))
    await mapLimited([...add], this.c.hostConcurrency, async ([host, ips]) => { await port.amend(host, prefix, admitPeersRuleset(prefix, [...ips])) })
  }

  /** Removes a host's firewall before its driver lets it go, where the machine outlives the host (`ssh` servers). */
  async remove (host: HostRecord): Promise<void> {
    const port = this.c.hosts.firewall
    if (port === undefined || host.driver !== 'ssh') return
    await port.remove(host.name, this.c.store.prefix())
  }
}
