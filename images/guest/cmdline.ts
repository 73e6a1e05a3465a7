/**
 * The kernel command line contract of the tiny guest image (see docs/images.md).
 * Pure: builds and parses the `sc.*` parameters that images/guest/init.sh reads.
 */
import { GuestCmdlineError } from './errors.ts'
import { parseCidr, parseIpv4 } from '../../blanket-manager/spec/ipv4.ts'

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
  /** Serial console device; default ttyS0. */
  console?: string
}

/** What parseGuestCmdline() found; fields absent from the line are undefined. */
export interface ParsedGuestCmdline {
  name?: string
  nics: GuestNic[]
  gateway?: string
  mtu?: number
  swapDevice?: string
  udpEchoPort?: number
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
 * `console=ttyS0 quiet panic=-1 sc.name=web1 sc.net=eth0:198.18.1.101/24 [sc.gw=..] [sc.mtu=..] [sc.swap=..] [sc.echo=..]`.
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
  return parts.join(' ')
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
    }
  }
  return out
}

/** The exact console line init prints when the guest named `name` is ready. */
export function guestReadyLine (name: string): string {
  return `${GUEST_READY_MARKER} ${name}`
}
