/**
 * The fake EC2 server's internet (pure part: addresses and nftables rules). The server
 * makes one namespace `<prefix>-inet` that plays two roles:
 *
 * - **the internet**: bridge `inet0` on INTERNET (default 198.18.232.0/24). The server's
 *   "internet gateway" — its local-driver WAN namespace — joins it (`igw0`, .2) and holds
 *   the instances' public addresses (.10 and up), translated 1:1 to their private
 *   addresses (DNAT in, SNAT out) and filtered by the instances' security groups
 *   (stateful: replies always pass; new inbound flows only when a rule's CIDR, protocol
 *   and port allow them; group-to-group rules never match internet traffic, as on AWS);
 * - **this machine's edge router**: its own address on `inet0` (.1) is this machine's
 *   public address (what `/checkip` answers), and bridge `lan0` (LAN, default
 *   198.18.233.0/24, router .1) is masqueraded to it; nothing from the internet gets in
 *   unless it answers a flow from inside. The operator's SSH runs from this namespace
 *   (the driver's `sshNetns`), and a supercloud's local-driver WAN may join `lan0`
 *   (SUPERCLOUD_LOCAL_UPLINK, drivers/local/uplink.ts): its local sites then reach EC2
 *   instances' public addresses from this machine's public address, like an office's
 *   servers behind its NAT.
 *
 * No address or route is added to the root namespace.
 */
import { formatCidr, formatIpv4, networkOf, parseCidr, sizeOf, type Cidr } from '../../../core/ipv4.ts'

export const DEFAULT_INTERNET = '198.18.232.0/24'
export const DEFAULT_LAN = '198.18.233.0/24'
export const INET_BRIDGE = 'inet0'
export const LAN_BRIDGE = 'lan0'
/** The internet gateway's link in the server's WAN namespace, and its peer on inet0. */
export const IGW_LINK = 'igw0'
export const IGW_PEER = 'igw'
export const EDGE_NFT_TABLE = 'scfedge'
export const IGW_NFT_TABLE = 'scfigw'
/** First host offset of public addresses (and of LAN addresses handed to joiners). */
export const FIRST_HOST = 10

export interface InternetPlan {
  internet: string
  prefixLen: number
  /** This machine's public address (the edge router on inet0). */
  publicAddress: string
  /** The internet gateway's own address on inet0. */
  igwAddress: string
  lan: string
  lanPrefixLen: number
  lanGateway: string
}

function cidrOf (text: string, what: string): Cidr {
  const c = parseCidr(text)
  if (c === undefined || c.prefix > 24) throw new Error(`fake EC2 internet: ${what} '${text}' must be an IPv4 CIDR of /24 or larger`)
  return { address: networkOf(c), prefix: c.prefix }
}

export function internetPlan (internet = DEFAULT_INTERNET, lan = DEFAULT_LAN): InternetPlan {
  const i = cidrOf(internet, 'internet')
  const l = cidrOf(lan, 'lan')
  return {
    internet: formatCidr(i),
    prefixLen: i.prefix,
    publicAddress: formatIpv4(i.address + 1),
    igwAddress: formatIpv4(i.address + 2),
    lan: formatCidr(l),
    lanPrefixLen: l.prefix,
    lanGateway: formatIpv4(l.address + 1)
  }
}

function nth (cidr: string, n: number, what: string): string {
  const c = cidrOf(cidr, what)
  const addr = c.address + FIRST_HOST + n
  if (n < 0 || addr >= c.address + sizeOf(c) - 1) throw new Error(`fake EC2 internet: no ${what} address left (#${n} of ${cidr})`)
  return formatIpv4(addr)
}

/** The n-th public address handed to an instance (0-based). */
export function publicAddressOf (plan: InternetPlan, n: number): string {
  return nth(plan.internet, n, 'public')
}

/** SUPERCLOUD_LOCAL_UPLINK value for the n-th local-driver WAN joining this machine's LAN. */
export function uplinkValue (plan: InternetPlan, ns: string, n = 0): string {
  return `ns=${ns},bridge=${LAN_BRIDGE},address=${nth(plan.lan, n, 'LAN')}/${plan.lanPrefixLen},gateway=${plan.lanGateway},public=${plan.publicAddress}`
}

/** nft input for the edge router: masquerade the LAN to the public address, let in only replies. */
export function edgeRules (plan: InternetPlan): string {
  return [
    `table ip ${EDGE_NFT_TABLE}`,
    `delete table ip ${EDGE_NFT_TABLE}`,
    `table ip ${EDGE_NFT_TABLE} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${INET_BRIDGE}" ip saddr ${plan.lan} masquerade`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname "${INET_BRIDGE}" ct state established,related accept`,
    `    iifname "${INET_BRIDGE}" drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname "${INET_BRIDGE}" ct state established,related accept`,
    `    iifname "${INET_BRIDGE}" drop`,
    '  }',
    '}',
    ''
  ].join('\n')
}

/** One security group rule as the fake keeps it (EC2's IpPermission, flattened). */
export interface IngressRule { proto: string, from: number, to: number, cidrs: string[], groups: string[] }

/** An instance behind the internet gateway: its addresses and the rules of all its groups. */
export interface GatewayInstance { privateIp: string, publicIp: string, ingress: IngressRule[] }

/** The nft match of one rule's protocol and ports ('' = any; undefined: a protocol not expressed here). */
function protoMatch (r: IngressRule): string | undefined {
  const p = r.proto === '6' ? 'tcp' : r.proto === '17' ? 'udp' : r.proto === '1' ? 'icmp' : r.proto
  if (p === '-1' || p === 'all') return ''
  if (p === 'tcp' || p === 'udp') {
    if (r.from < 0 || r.to < 0 || (r.from === 0 && r.to === 65535)) return `meta l4proto ${p}`
    return `${p} dport ${r.from === r.to ? String(r.from) : `${r.from}-${r.to}`}`
  }
  if (p === 'icmp') return 'meta l4proto icmp'
  if (/^\d+$/.test(p)) return `meta l4proto ${p}`
  return undefined
}

/**
 * nft input for the internet gateway: 1:1 NAT of every instance's public address and, for
 * new inbound flows, the CIDR rules of its security groups; everything else from the
 * internet that is not a reply is dropped.
 */
export function gatewayRules (instances: GatewayInstance[]): string {
  const pre: string[] = []
  const post: string[] = []
  const allow: string[] = []
  for (const i of [...instances].sort((a, b) => a.publicIp < b.publicIp ? -1 : 1)) {
    pre.push(`    iifname "${IGW_LINK}" ip daddr ${i.publicIp} dnat to ${i.privateIp}`)
    post.push(`    oifname "${IGW_LINK}" ip saddr ${i.privateIp} snat to ${i.publicIp}`)
    for (const r of i.ingress) {
      const m = protoMatch(r)
      if (m === undefined) continue
      for (const c of [...new Set(r.cidrs)].sort()) {
        allow.push(`    iifname "${IGW_LINK}" ip daddr ${i.privateIp} ip saddr ${c}${m === '' ? '' : ` ${m}`} accept`)
      }
    }
  }
  return [
    `table ip ${IGW_NFT_TABLE}`,
    `delete table ip ${IGW_NFT_TABLE}`,
    `table ip ${IGW_NFT_TABLE} {`,
    '  chain prerouting {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    ...pre,
    '  }',
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    ...post,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname "${IGW_LINK}" ct state established,related accept`,
    `    iifname "${IGW_LINK}" drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname "${IGW_LINK}" ct state established,related accept`,
    ...allow,
    `    iifname "${IGW_LINK}" drop`,
    '  }',
    '}',
    ''
  ].join('\n')
}
