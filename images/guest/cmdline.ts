/**
 * The kernel command line contract of the tiny guest image (see docs/images.md).
 * Pure: builds and parses the `sc.*` parameters that images/guest/init.sh reads.
 */
import { GuestCmdlineError } from './errors.ts'
import { parseCidr, parseIpv4 } from '../../core/ipv4.ts'

/** Printed once on the console when init has configured everything. */
export const GUEST_READY_MARKER = 'SUPERCLOUD-GUEST-READY'
/** Printed instead of the ready marker when some step failed (the shell still starts). */
export const GUEST_FAILED_MARKER = 'SUPERCLOUD-GUEST-FAILED'

export interface GuestNic {
  /** Interface name inside the guest: eth0, eth1, ... in the order of the virtio-net devices. */
  ifname: string
  /** IPv4 address with prefix, e.g. 198.18.1.101/24. */
  address: string
}

export interface GuestCmdlineOptions {
  /** VM name: hostname, prompt and ready marker. Letters, digits, '.', '_', '-'. */
  name: string
  nics: GuestNic[]
  /** IPv4 default gateway. */
  gateway?: string
  /** MTU applied to every listed interface (e.g. 1450 behind VXLAN). */
  mtu?: number
  /** Block device to use as swap, e.g. /dev/vdb (mkswap + swapon at boot). */
  swapDevice?: string
  /** Start `netprobe echo <port>` (UDP) at boot. */
  udpEchoPort?: number
  /** Start the l2fw transparent firewall at boot (`sc.fw=`), making this guest a middlebox. */
  firewall?: GuestFirewall
  /** Serial console device; default ttyS0. */
  console?: string
}

export type L2fwAction = 'allow' | 'drop'

export interface L2fwRule {
  action: L2fwAction
  /** l2fw match: terms joined by '+', e.g. 'arp', 'icmp', 'udp:7', 'tcp:8000-8080', 'vlan:10+udp:53' (see `l2fw --help`). */
  match: string
}

/** The l2fw firewall of a middlebox guest: forwards frames between two NICs except those the rules drop. */
export interface GuestFirewall {
  /** The two interfaces it joins, e.g. ['eth0', 'eth1']; they need no addresses. */
  between: [string, string]
  /** Tried in order; the first match decides. */
  rules?: L2fwRule[]
  /** What happens to a frame no rule matches; l2fw's default is 'allow'. */
  default?: L2fwAction
}

/** What parseGuestCmdline() found; fields absent from the line are undefined. */
export interface ParsedGuestCmdline {
  name?: string
  nics: GuestNic[]
  gateway?: string
  mtu?: number
  swapDevice?: string
  udpEchoPort?: number
  firewall?: GuestFirewall
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/
const DEVICE_RE = /^\/dev\/[A-Za-z0-9_-]+$/
const CONSOLE_RE = /^[A-Za-z0-9]+(,[0-9]+[noe]?[5-8]?)?$/

function checkPort (field: string, n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new GuestCmdlineError(field, `${n} is not a port number (1-65535)`)
}

/**
 * The kernel command line for a tiny-image guest:
 * `console=ttyS0 quiet panic=-1 sc.name=web1 sc.net=eth0:198.18.1.101/24 [sc.gw=..] [sc.mtu=..] [sc.swap=..] [sc.echo=..] [sc.fw=..]`.
 * Throws GuestCmdlineError for a value that does not fit the contract.
 */
export function guestCmdline (o: GuestCmdlineOptions): string {
  if (!NAME_RE.test(o.name)) throw new GuestCmdlineError('name', `'${o.name}' must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`)
  const console = o.console ?? 'ttyS0'
  if (!CONSOLE_RE.test(console)) throw new GuestCmdlineError('console', `'${console}' is not a console device`)
  const parts = [`console=${console}`, 'quiet', 'panic=-1', `sc.name=${o.name}`]
  const seen = new Set<string>()
  const nets: string[] = []
  for (const [i, nic] of o.nics.entries()) {
    if (!IFNAME_RE.test(nic.ifname)) throw new GuestCmdlineError(`nics[${i}].ifname`, `'${nic.ifname}' is not an interface name`)
    if (seen.has(nic.ifname)) throw new GuestCmdlineError(`nics[${i}].ifname`, `${nic.ifname} is listed twice`)
    seen.add(nic.ifname)
    if (parseCidr(nic.address) === undefined) throw new GuestCmdlineError(`nics[${i}].address`, `'${nic.address}' is not an IPv4 address with prefix (a.b.c.d/n)`)
    nets.push(`${nic.ifname}:${nic.address}`)
  }
  if (nets.length > 0) parts.push(`sc.net=${nets.join(',')}`)
  if (o.gateway !== undefined) {
    if (parseIpv4(o.gateway) === undefined) throw new GuestCmdlineError('gateway', `'${o.gateway}' is not an IPv4 address`)
    parts.push(`sc.gw=${o.gateway}`)
  }
  if (o.mtu !== undefined) {
    if (!Number.isInteger(o.mtu) || o.mtu < 68 || o.mtu > 65535) throw new GuestCmdlineError('mtu', `${o.mtu} is not an MTU (68-65535)`)
    parts.push(`sc.mtu=${o.mtu}`)
  }
  if (o.swapDevice !== undefined) {
    if (!DEVICE_RE.test(o.swapDevice)) throw new GuestCmdlineError('swapDevice', `'${o.swapDevice}' is not a device path like /dev/vdb`)
    parts.push(`sc.swap=${o.swapDevice}`)
  }
  if (o.udpEchoPort !== undefined) {
    checkPort('udpEchoPort', o.udpEchoPort)
    parts.push(`sc.echo=${o.udpEchoPort}`)
  }
  if (o.firewall !== undefined) parts.push(`sc.fw=${l2fwArgs(o.firewall).join(',')}`)
  return parts.join(' ')
}

const PORT_RE = /^([1-9][0-9]{0,4})(?:-([1-9][0-9]{0,4}))?$/

/** True when `term` is one l2fw match term (the grammar of images/guest/tools/l2fw.c). */
function isL2fwTerm (term: string): boolean {
  if (/^(any|untagged|arp|ipv4|ip|ipv6|ip6|icmp|icmp6|tcp|udp|sctp|vlan)$/.test(term)) return true
  const colon = term.indexOf(':')
  if (colon < 0) return false
  const key = term.slice(0, colon)
  const arg = term.slice(colon + 1)
  switch (key) {
    case 'ethertype': {
      const m = /^(?:0x([0-9a-fA-F]{1,4})|(0|[1-9][0-9]{0,4}))$/.exec(arg)
      return m !== null && (m[1] !== undefined || Number(m[2]) <= 0xffff)
    }
    case 'proto': return /^(0|[1-9][0-9]{0,2})$/.test(arg) && Number(arg) <= 255
    case 'vlan': return /^(0|[1-9][0-9]{0,3})$/.test(arg) && Number(arg) <= 4094
    case 'tcp': case 'udp': case 'sctp': {
      const m = PORT_RE.exec(arg)
      if (m === null) return false
      const lo = Number(m[1])
      const hi = m[2] !== undefined ? Number(m[2]) : lo
      return lo <= 65535 && hi <= 65535 && hi >= lo
    }
    default: return false
  }
}

/** True when `match` is a valid l2fw match (one or more terms joined by '+'). */
export function isL2fwMatch (match: string): boolean {
  return match !== '' && match.length < 256 && match.split('+').every(isL2fwTerm)
}

/** The l2fw argv (without the program name) for a firewall; throws GuestCmdlineError on a bad value. */
export function l2fwArgs (fw: GuestFirewall): string[] {
  const [a, b] = fw.between
  for (const [i, ifname] of [a, b].entries()) {
    if (!IFNAME_RE.test(ifname)) throw new GuestCmdlineError(`firewall.between[${i}]`, `'${ifname}' is not an interface name`)
  }
  if (a === b) throw new GuestCmdlineError('firewall.between', `the two interfaces must differ (${a})`)
  const args = [a, b]
  for (const [i, r] of (fw.rules ?? []).entries()) {
    if (r.action !== 'allow' && r.action !== 'drop') throw new GuestCmdlineError(`firewall.rules[${i}].action`, `'${String(r.action)}' is not allow or drop`)
    if (!isL2fwMatch(r.match)) throw new GuestCmdlineError(`firewall.rules[${i}].match`, `'${r.match}' is not an l2fw match (e.g. arp, icmp, udp:7, tcp:80-90, vlan:10+ipv4)`)
    args.push(`--${r.action}`, r.match)
  }
  if (fw.default !== undefined) {
    if (fw.default !== 'allow' && fw.default !== 'drop') throw new GuestCmdlineError('firewall.default', `'${String(fw.default)}' is not allow or drop`)
    args.push('--default', fw.default)
  }
  return args
}

/** Reads an l2fw argv back into a GuestFirewall (undefined when it is not one l2fwArgs() could have made). */
export function parseL2fwArgs (args: string[]): GuestFirewall | undefined {
  const [a, b, ...rest] = args
  if (a === undefined || b === undefined) return undefined
  const fw: GuestFirewall = { between: [a, b] }
  const rules: L2fwRule[] = []
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]
    const value = rest[i + 1]
    if (value === undefined) return undefined
    if (flag === '--allow' || flag === '--drop') rules.push({ action: flag === '--allow' ? 'allow' : 'drop', match: value })
    else if (flag === '--default' && (value === 'allow' || value === 'drop')) fw.default = value
    else return undefined
  }
  if (rules.length > 0) fw.rules = rules
  return fw
}

/** Reads the sc.* parameters back from a command line (what init does, in TypeScript). Unknown words are ignored. */
export function parseGuestCmdline (cmdline: string): ParsedGuestCmdline {
  const out: ParsedGuestCmdline = { nics: [] }
  for (const word of cmdline.trim().split(/\s+/)) {
    const eq = word.indexOf('=')
    if (eq < 0) continue
    const key = word.slice(0, eq)
    const value = word.slice(eq + 1)
    switch (key) {
      case 'sc.name': out.name = value; break
      case 'sc.net':
        out.nics = value.split(',').filter(s => s !== '').map(spec => {
          const colon = spec.indexOf(':')
          return colon < 0 ? { ifname: spec, address: '' } : { ifname: spec.slice(0, colon), address: spec.slice(colon + 1) }
        })
        break
      case 'sc.gw': out.gateway = value; break
      case 'sc.mtu': out.mtu = Number(value); break
      case 'sc.swap': out.swapDevice = value; break
      case 'sc.echo': out.udpEchoPort = Number(value); break
      case 'sc.fw': {
        const fw = parseL2fwArgs(value.split(','))
        if (fw !== undefined) out.firewall = fw
        break
      }
    }
  }
  return out
}

/** The exact console line init prints when the guest named `name` is ready. */
export function guestReadyLine (name: string): string {
  return `${GUEST_READY_MARKER} ${name}`
}
