/**
 * The local driver's optional internet uplink (pure part). By default the WAN namespace
 * joins only the supercloud's own sites. With an uplink it also joins a LAN bridge in
 * another namespace that NATs to a public address — e.g. the fake EC2 server's internet
 * (drivers/ec2/fake-server/internet.ts), where EC2 instances have their public addresses —
 * so a local site reaches the outside the way an office reaches the internet:
 *
 *   site ns ── WAN ns (up0: `address`, default via `gateway`, masquerade) ── `bridge` in `ns`
 *
 * Asked for explicitly, per CLI run, with the environment variable
 *   SUPERCLOUD_LOCAL_UPLINK=ns=<namespace>,bridge=<bridge>,address=<a.b.c.d/len>,gateway=<a.b.c.d>,public=<a.b.c.d>
 * `public` is the address the sites' traffic comes from out there (the uplink's NAT): the
 * local hosts' records carry it (HostRecord.reach) so extender peers elsewhere know where
 * to send. The driver remembers the uplink (`<dir>/local/uplink.json`); the namespace
 * deletion in destroyNetwork takes the link with it. Nothing is added to the root namespace.
 */
import { LocalDriverError } from '../../core/errors.ts'
import { cidrContains, parseCidr, parseIpv4 } from '../../core/ipv4.ts'
import { checkPrefix, fitName } from './names.ts'

export const UPLINK_ENV = 'SUPERCLOUD_LOCAL_UPLINK'
/** The uplink's interface in the WAN namespace. */
export const WAN_UPLINK = 'up0'
/** nftables table (in the WAN namespace) holding the uplink's masquerade rule. */
export const UPLINK_NFT_TABLE = 'scuplink'

export interface UplinkSpec {
  /** Namespace holding the LAN bridge (not ours: the uplink's owner made it). */
  ns: string
  bridge: string
  /** Address of the WAN namespace on that LAN, with prefix length (a.b.c.d/len). */
  address: string
  /** The LAN's router (default route of the WAN namespace). */
  gateway: string
  /** The address the sites' traffic appears from beyond the uplink's NAT. */
  publicAddress: string
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,15}$/

/** Parses SUPERCLOUD_LOCAL_UPLINK's value; LocalDriverError names what is wrong. */
export function parseUplink (text: string): UplinkSpec {
  const kv: Record<string, string> = {}
  for (const part of text.split(',').map(s => s.trim()).filter(s => s !== '')) {
    const m = /^([a-z]+)=(.*)$/.exec(part)
    if (m === null || m[1] === undefined || m[2] === undefined) throw new LocalDriverError(`${UPLINK_ENV}: '${part}' is not key=value`)
    kv[m[1]] = m[2]
  }
  const need = (k: string): string => {
    const v = kv[k]
    if (v === undefined || v === '') throw new LocalDriverError(`${UPLINK_ENV} needs ${k}= (ns, bridge, address, gateway, public)`)
    return v
  }
  const unknown = Object.keys(kv).filter(k => !['ns', 'bridge', 'address', 'gateway', 'public'].includes(k))
  if (unknown.length > 0) throw new LocalDriverError(`${UPLINK_ENV}: unknown key(s) ${unknown.join(', ')} (ns, bridge, address, gateway, public)`)
  const u: UplinkSpec = { ns: need('ns'), bridge: need('bridge'), address: need('address'), gateway: need('gateway'), publicAddress: need('public') }
  if (!NAME_RE.test(u.ns)) throw new LocalDriverError(`${UPLINK_ENV}: ns '${u.ns}' is not a namespace name`)
  if (!NAME_RE.test(u.bridge)) throw new LocalDriverError(`${UPLINK_ENV}: bridge '${u.bridge}' is not an interface name`)
  const c = parseCidr(u.address)
  if (c === undefined || !u.address.includes('/')) throw new LocalDriverError(`${UPLINK_ENV}: address '${u.address}' must be an IPv4 address with its prefix length (a.b.c.d/len)`)
  const gw = parseIpv4(u.gateway)
  if (gw === undefined) throw new LocalDriverError(`${UPLINK_ENV}: gateway '${u.gateway}' is not an IPv4 address`)
  if (!cidrContains(c, gw)) throw new LocalDriverError(`${UPLINK_ENV}: gateway ${u.gateway} is not on ${u.address}`)
  if (gw === c.address) throw new LocalDriverError(`${UPLINK_ENV}: address and gateway are both ${u.gateway}`)
  if (parseIpv4(u.publicAddress) === undefined) throw new LocalDriverError(`${UPLINK_ENV}: public '${u.publicAddress}' is not an IPv4 address`)
  return u
}

/** The uplink's veth end in the uplink namespace (carries the supercloud's prefix). */
export function uplinkPeerLink (prefix: string): string {
  checkPrefix(prefix)
  return fitName(`${prefix}-up`)
}

/** `nft -f -` input that makes the WAN namespace masquerade what leaves through the uplink (replaces the table). */
export function uplinkNftRules (): string {
  return [
    `table ip ${UPLINK_NFT_TABLE}`,
    `delete table ip ${UPLINK_NFT_TABLE}`,
    `table ip ${UPLINK_NFT_TABLE} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    oifname "${WAN_UPLINK}" masquerade`,
    '  }',
    '}',
    ''
  ].join('\n')
}

/** The network name of a supercloud's local hosts in HostRecord.reach (they reach each other at their site addresses). */
export function localNetworkName (prefix: string): string {
  return `local ${prefix}`
}
