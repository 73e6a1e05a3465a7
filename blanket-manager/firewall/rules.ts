/**
 * A host's firewall as nftables text (pure): from what the controller knows about the host, the
 * supercloud's other hosts and the host's VirtualWire peers, the ruleset `nft -f` installs
 * atomically (apply.ts runs it over the host's SSH). One `inet` table (host services) and one
 * `bridge` table (guest ports) per supercloud, named after its prefix, so two superclouds on one
 * host keep separate tables and `down` removes only its own. docs/security.md says what each
 * listener accepts.
 */
import { parseIpv4 } from '../../core/ipv4.ts'
import { SupercloudError } from '../../core/errors.ts'

/** UDP port of the VirtualWire data plane (VXLAN). */
export const FW_VXLAN_PORT = 4789
/** TCP port of the Overdriver page repository. */
export const FW_REPOSITORY_PORT = 7709
/** TCP ports of migration listeners (QEMU stream and NBD). */
export const FW_MIGRATION_PORTS: [number, number] = [49152, 49215]
/** UDP ports of the site extenders (OpenVPN): extender i on 1194 + i. */
export const FW_EXTENDER_PORTS: [number, number] = [1194, 1257]
/** The packet-mark bit the bridge table sets on frames from guest ports (seen by the inet table's input). */
export const GUEST_MARK = 0x10000000

export interface HostFirewallFacts {
  /** The supercloud's kernel-object prefix (table names, its guests' TAP names `<prefix>t...`). */
  prefix: string
  /** Where SSH may come from: 'any', or the addresses the driver connects from. */
  sshFrom: 'any' | string[]
  /** The supercloud's other hosts, as their packets arrive here (site and public addresses). */
  hosts: string[]
  /** Sister endpoints of the connectors this host carries (VXLAN sources). */
  vxlanPeers: string[]
  /** VirtualWire's UDP port (default 4789). */
  vxlanPort?: number
}

/** A bad fact given to the generator (an address that is not IPv4, a bad prefix). */
export class FirewallFactsError extends SupercloudError {
  constructor (detail: string) {
    super('SC_FIREWALL_FACTS', `host firewall: ${detail}`)
  }
}

/** The name of a supercloud's nftables tables (the same in the inet and bridge families). */
export function firewallTable (prefix: string): string {
  if (!/^[a-z][a-z0-9]{0,7}$/.test(prefix)) throw new FirewallFactsError(`prefix '${prefix}' is not a supercloud prefix`)
  return `supercloud_${prefix}`
}

function addresses (list: string[], what: string): string[] {
  for (const a of list) if (parseIpv4(a) === undefined) throw new FirewallFactsError(`${what} '${a}' is not an IPv4 address`)
  return [...new Set(list)].sort()
}

function setDecl (name: string, elems: string[]): string[] {
  return [`  set ${name} {`, '    type ipv4_addr', ...(elems.length > 0 ? [`    elements = { ${elems.join(', ')} }`] : []), '  }']
}

/**
 * The whole ruleset: creates-or-replaces both tables in one transaction (`nft -f` applies a
 * file atomically: the old rules stay until the new ones are in).
 *
 * inet table, input hook, policy drop. In order: loopback; anything from a guest port (marked
 * by the bridge table) is dropped, so a guest reaches no host service whatever its source
 * address; VXLAN only from the peers; established traffic (the host's own connections);
 * ICMP; SSH from `sshFrom`; the repository, migration and extender ports from the supercloud's
 * hosts. Forwarded traffic (guests routed through the host) is not this table's business.
 *
 * bridge table: frames from guest ports (`<prefix>t*` TAPs, Xen `vif*`) get the guest mark, and
 * may not claim a host's or the SSH source's address (IP source or ARP sender), so a guest
 * cannot pose as a host towards the other hosts of its segment.
 */
export function hostFirewallRuleset (f: HostFirewallFacts): string {
  const table = firewallTable(f.prefix)
  const hosts = addresses(f.hosts, 'host address')
  const peers = addresses(f.vxlanPeers, 'VXLAN peer')
  const ssh = f.sshFrom === 'any' ? 'any' : addresses(f.sshFrom, 'SSH source')
  const trusted = [...new Set([...hosts, ...(ssh === 'any' ? [] : ssh)])].sort()
  const vx = f.vxlanPort ?? FW_VXLAN_PORT
  const guestPorts = `{ "${f.prefix}t*", "vif*" }`
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    ...setDecl('hosts', hosts),
    ...setDecl('vxlan_peers', peers),
    ...setDecl('ssh_from', ssh === 'any' ? [] : ssh),
    '  chain input {',
    '    type filter hook input priority filter; policy drop;',
    '    iif "lo" accept',
    `    meta mark & 0x${GUEST_MARK.toString(16)} == 0x${GUEST_MARK.toString(16)} counter drop comment "from a guest"`,
    `    udp dport ${vx} ip saddr @vxlan_peers accept`,
    `    udp dport ${vx} counter drop comment "VXLAN from a non-peer"`,
    '    ct state established,related accept',
    '    ct state invalid drop',
    '    meta l4proto { icmp, ipv6-icmp } accept',
    ssh === 'any' ? '    tcp dport 22 accept' : '    tcp dport 22 ip saddr @ssh_from accept',
    `    tcp dport ${FW_REPOSITORY_PORT} ip saddr @hosts accept`,
    `    tcp dport ${FW_MIGRATION_PORTS[0]}-${FW_MIGRATION_PORTS[1]} ip saddr @hosts accept`,
    `    udp dport ${FW_EXTENDER_PORTS[0]}-${FW_EXTENDER_PORTS[1]} ip saddr @hosts accept`,
    '    counter comment "dropped by policy"',
    '  }',
    '}',
    `table bridge ${table}`,
    `delete table bridge ${table}`,
    `table bridge ${table} {`,
    ...setDecl('trusted', trusted),
    '  chain prerouting {',
    '    type filter hook prerouting priority -300; policy accept;',
    `    iifname ${guestPorts} ip saddr @trusted counter drop comment "guest posing as a host"`,
    `    iifname ${guestPorts} arp saddr ip @trusted counter drop comment "guest posing as a host"`,
    `    iifname ${guestPorts} meta mark set meta mark | 0x${GUEST_MARK.toString(16)}`,
    '  }',
    '}',
    ''
  ].join('\n')
}

/** Removes both tables (nothing when absent): `nft -f` input for `down` and host removal. */
export function removeFirewallRuleset (prefix: string): string {
  const table = firewallTable(prefix)
  return [`table inet ${table}`, `delete table inet ${table}`, `table bridge ${table}`, `delete table bridge ${table}`, ''].join('\n')
}

/**
 * Admits more VXLAN peers at once, without replacing the ruleset (a migration's new endpoints:
 * the sisters on the destination, the destination on the sisters), ahead of their traffic. The
 * next full apply (`up`) sets the exact peers again.
 */
export function admitPeersRuleset (prefix: string, peers: string[]): string {
  const list = addresses(peers, 'VXLAN peer')
  return list.length === 0 ? '' : `add element inet ${firewallTable(prefix)} vxlan_peers { ${list.join(', ')} }\n`
}
