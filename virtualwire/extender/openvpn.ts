/**
 * VirtualWire extenders (pure part): an extender is an encrypted point-to-point tunnel
 * between the gateway hosts of two sites, so connector traffic (VXLAN) between sites
 * crosses the WAN encrypted. Implemented with OpenVPN 2.6: UDP, TLS with self-signed
 * certificates pinned by `peer-fingerprint` (no CA), a tun device with a /30 from
 * 198.19.254.0/24 per extender, AES-256-GCM.
 *
 * This module makes the OpenVPN configuration of each end, the tunnel addresses, and the
 * routing plan that sends traffic between sites through the extenders. Nothing here
 * touches a host; `manage.ts` applies it.
 */
import { formatCidr, formatIpv4, networkOf, parseCidr, parseIpv4 } from '../../core/ipv4.ts'
import { ExtenderError } from './errors.ts'

/** Addresses of the tunnels' inner /30s. */
export const EXTENDER_TUNNEL_NET = '198.19.254.0/24'
/** At most this many extenders per supercloud (one /30 each in EXTENDER_TUNNEL_NET). */
export const MAX_EXTENDERS = 64
/** UDP port of extender 0; extender i listens on DEFAULT_EXTENDER_PORT + i unless told otherwise. */
export const DEFAULT_EXTENDER_PORT = 1194
export const DEFAULT_EXTENDER_CIPHER = 'AES-256-GCM'
/**
 * Firewall mark on the OpenVPN sockets, routing table and rule preference that keep each
 * extender's own (encrypted) packets on the underlay even when the peer's address lies
 * inside a subnet that is routed into the tunnel.
 */
export const DEFAULT_UNDERLAY_POLICY: UnderlayPolicy = { mark: 0x5c0e, table: 5326, pref: 5326 }
/** Metric of the `unreachable` fallback routes on gateways: with the tunnel down, traffic for the remote site stops instead of leaking onto the WAN in clear. */
export const FALLBACK_METRIC = 4242

export interface UnderlayPolicy {
  /** SO_MARK of the OpenVPN UDP socket (`mark` option). */
  mark: number
  /** Routing table holding the underlay route to each remote endpoint. */
  table: number
  /** Preference of the `ip rule ... fwmark <mark> lookup <table>`. */
  pref: number
}

export interface ExtenderAddress {
  ip: string
  port: number
}

/** One end of an extender, as its OpenVPN process sees it. */
export interface OpenVpnEndOptions {
  /** Extender name: lowercase letters, digits, '-' (file names on the host). */
  name: string
  /** Underlay address and UDP port this end listens on. */
  local: ExtenderAddress
  /** Underlay address and UDP port of the other end. */
  remote: ExtenderAddress
  /** This end's address inside the tunnel. */
  tunnelLocal: string
  /** The other end's address inside the tunnel. */
  tunnelRemote: string
  certPath: string
  keyPath: string
  /** SHA-256 fingerprint of the other end's certificate (any case, colons optional). */
  peerFingerprint: string
  /** tun device name (at most 15 characters). */
  dev: string
  /** One end runs the TLS server, the other the client; `extenderEnds` gives end a the server. */
  tlsRole: 'server' | 'client'
  /** Directory on the host for the pid, status and log files (see extenderFiles). */
  runDir: string
  /** Data channel cipher; default AES-256-GCM. */
  cipher?: string
  /** Keepalive: ping every intervalS, restart after timeoutS of silence. Default 5 / 30. */
  keepalive?: { intervalS: number, timeoutS: number }
  /** Socket mark for the underlay policy; default DEFAULT_UNDERLAY_POLICY.mark. */
  mark?: number
  /** Seconds between status file updates; default 1. */
  statusIntervalS?: number
}

/** Files of one extender end on its host. */
export interface ExtenderFiles {
  config: string
  pid: string
  status: string
  log: string
  cert: string
  key: string
}

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,47}$/
const DEV_RE = /^[A-Za-z0-9_.-]{1,15}$/
const CIPHER_RE = /^[A-Za-z0-9-]+$/

export function extenderFiles (runDir: string, name: string): ExtenderFiles {
  const base = `${runDir.replace(/\/+$/, '')}/${name}`
  return { config: `${base}.conf`, pid: `${base}.pid`, status: `${base}.status`, log: `${base}.log`, cert: `${base}.crt`, key: `${base}.key` }
}

/** tun device name of extender `index`, carrying the supercloud's prefix (e.g. sc3f2av0). */
export function extenderDevName (prefix: string, index: number): string {
  const name = `${prefix}v${index.toString(16)}`
  if (!DEV_RE.test(name)) throw new ExtenderError(undefined, `device name '${name}' does not fit 15 characters`)
  return name
}

/** The /30 of extender `index` in EXTENDER_TUNNEL_NET: end a gets .4i+1, end b .4i+2. */
export function extenderTunnel (index: number): { cidr: string, a: string, b: string } {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_EXTENDERS) throw new ExtenderError(undefined, `extender index ${index} is outside 0-${MAX_EXTENDERS - 1}`)
  const net = parseIpv4('198.19.254.0') ?? 0
  const base = net + 4 * index
  return { cidr: `${formatIpv4(base)}/30`, a: formatIpv4(base + 1), b: formatIpv4(base + 2) }
}

/**
 * Normalises a SHA-256 fingerprint to OpenVPN's form (32 uppercase hex pairs joined by ':').
 * Accepts `openssl x509 -fingerprint -sha256` output (`sha256 Fingerprint=ab:cd:...`),
 * colon-separated or plain hex. Throws ExtenderError for anything else.
 */
export function normaliseFingerprint (text: string): string {
  const value = text.trim().replace(/^.*fingerprint\s*=\s*/i, '').replace(/^sha256:/i, '')
  const hex = value.replace(/:/g, '')
  if (!/^[0-9a-fA-F]{64}$/.test(hex) || (value.includes(':') && !/^([0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}$/.test(value))) {
    throw new ExtenderError(undefined, `'${text.trim()}' is not a SHA-256 fingerprint`)
  }
  return (hex.toUpperCase().match(/../g) ?? []).join(':')
}

function checkAddress (name: string, field: string, a: ExtenderAddress): void {
  if (parseIpv4(a.ip) === undefined) throw new ExtenderError(name, `${field}.ip '${a.ip}' is not an IPv4 address`)
  if (!Number.isInteger(a.port) || a.port < 1 || a.port > 65535) throw new ExtenderError(name, `${field}.port ${a.port} is not a port number`)
}

function checkPath (name: string, field: string, p: string): void {
  if (!p.startsWith('/') || /[\s"'\\]/.test(p)) throw new ExtenderError(name, `${field} '${p}' must be an absolute path without spaces or quotes`)
}

/**
 * The OpenVPN configuration file of one end. Point-to-point (no `mode server`), UDP, TLS
 * 1.2+ with the peer pinned by fingerprint, ECDH only (`dh none`), AEAD data channel.
 */
export function openVpnConfig (o: OpenVpnEndOptions): string {
  if (!NAME_RE.test(o.name)) throw new ExtenderError(o.name, 'name must be 1-48 lowercase letters, digits or \'-\'')
  checkAddress(o.name, 'local', o.local)
  checkAddress(o.name, 'remote', o.remote)
  for (const [f, v] of [['tunnelLocal', o.tunnelLocal], ['tunnelRemote', o.tunnelRemote]] as const) {
    if (parseIpv4(v) === undefined) throw new ExtenderError(o.name, `${f} '${v}' is not an IPv4 address`)
  }
  if (o.tunnelLocal === o.tunnelRemote) throw new ExtenderError(o.name, 'tunnelLocal and tunnelRemote must differ')
  if (!DEV_RE.test(o.dev)) throw new ExtenderError(o.name, `dev '${o.dev}' is not an interface name (1-15 characters)`)
  checkPath(o.name, 'certPath', o.certPath)
  checkPath(o.name, 'keyPath', o.keyPath)
  checkPath(o.name, 'runDir', o.runDir)
  const cipher = o.cipher ?? DEFAULT_EXTENDER_CIPHER
  if (!CIPHER_RE.test(cipher)) throw new ExtenderError(o.name, `cipher '${cipher}' is not a cipher name`)
  const ka = o.keepalive ?? { intervalS: 5, timeoutS: 30 }
  if (!Number.isInteger(ka.intervalS) || !Number.isInteger(ka.timeoutS) || ka.intervalS < 1 || ka.timeoutS < 2 * ka.intervalS) {
    throw new ExtenderError(o.name, `keepalive ${ka.intervalS}/${ka.timeoutS}: timeout must be at least twice the interval`)
  }
  const mark = o.mark ?? DEFAULT_UNDERLAY_POLICY.mark
  const statusEvery = o.statusIntervalS ?? 1
  const files = extenderFiles(o.runDir, o.name)
  const lines = [
    `# supercloud extender ${o.name} (${o.tlsRole} end), generated; do not edit`,
    `dev ${o.dev}`,
    'dev-type tun',
    'topology p2p',
    'proto udp',
    `local ${o.local.ip}`,
    `lport ${o.local.port}`,
    `remote ${o.remote.ip} ${o.remote.port}`,
    `ifconfig ${o.tunnelLocal} ${o.tunnelRemote}`,
    o.tlsRole === 'server' ? 'tls-server' : 'tls-client',
    ...(o.tlsRole === 'server' ? ['dh none'] : []),
    'tls-version-min 1.2',
    `cert ${o.certPath}`,
    `key ${o.keyPath}`,
    `peer-fingerprint ${normaliseFingerprint(o.peerFingerprint)}`,
    `data-ciphers ${cipher}`,
    `data-ciphers-fallback ${cipher}`,
    // Traffic for the peer gateway's own site address is legitimate tunnel traffic (our
    // policy routing keeps OpenVPN's packets on the underlay), not a routing loop.
    'allow-recursive-routing',
    'persist-tun',
    `keepalive ${ka.intervalS} ${ka.timeoutS}`,
    `mark ${mark}`,
    `writepid ${files.pid}`,
    `status ${files.status} ${statusEvery}`,
    'status-version 1',
    `log ${files.log}`,
    'verb 3',
    'mute-replay-warnings'
  ]
  return lines.join('\n') + '\n'
}

export interface ExtenderSide {
  ip: string
  port: number
  certPath: string
  keyPath: string
  /** This side's own certificate fingerprint (given to the other side). */
  fingerprint: string
  dev: string
  runDir: string
}

/**
 * Both ends of extender `index`: tunnel addresses from its /30 (a = .4i+1, b = .4i+2),
 * each end pinned to the other's fingerprint, a the TLS server and b the client.
 */
export function extenderEnds (o: { name: string, index: number, a: ExtenderSide, b: ExtenderSide, cipher?: string, keepalive?: { intervalS: number, timeoutS: number }, mark?: number }): { a: OpenVpnEndOptions, b: OpenVpnEndOptions } {
  const tun = extenderTunnel(o.index)
  const end = (self: ExtenderSide, peer: ExtenderSide, role: 'server' | 'client', tl: string, tr: string): OpenVpnEndOptions => {
    const e: OpenVpnEndOptions = {
      name: o.name,
      local: { ip: self.ip, port: self.port },
      remote: { ip: peer.ip, port: peer.port },
      tunnelLocal: tl,
      tunnelRemote: tr,
      certPath: self.certPath,
      keyPath: self.keyPath,
      peerFingerprint: peer.fingerprint,
      dev: self.dev,
      tlsRole: role,
      runDir: self.runDir
    }
    if (o.cipher !== undefined) e.cipher = o.cipher
    if (o.keepalive !== undefined) e.keepalive = o.keepalive
    if (o.mark !== undefined) e.mark = o.mark
    return e
  }
  return { a: end(o.a, o.b, 'server', tun.a, tun.b), b: end(o.b, o.a, 'client', tun.b, tun.a) }
}

/** Traffic counters from an OpenVPN status file (status-version 1, point-to-point). */
export interface OpenVpnStatus {
  /** Bytes read from the tun device (to be encrypted and sent). */
  tunReadBytes: number
  /** Bytes written to the tun device (received and decrypted). */
  tunWriteBytes: number
  /** Bytes of encrypted UDP received / sent on the underlay. */
  linkReadBytes: number
  linkWriteBytes: number
  updated?: string
}

export function parseOpenVpnStatus (text: string): OpenVpnStatus | undefined {
  const get = (label: string): number | undefined => {
    const m = new RegExp(`^${label.replace(/\//g, '\\/')},(\\d+)\\s*$`, 'm').exec(text)
    return m?.[1] !== undefined ? Number(m[1]) : undefined
  }
  const tunReadBytes = get('TUN/TAP read bytes')
  const tunWriteBytes = get('TUN/TAP write bytes')
  const linkReadBytes = get('TCP/UDP read bytes')
  const linkWriteBytes = get('TCP/UDP write bytes')
  if (tunReadBytes === undefined || tunWriteBytes === undefined || linkReadBytes === undefined || linkWriteBytes === undefined) return undefined
  const s: OpenVpnStatus = { tunReadBytes, tunWriteBytes, linkReadBytes, linkWriteBytes }
  const updated = /^Updated,(.+)$/m.exec(text)?.[1]
  if (updated !== undefined) s.updated = updated.trim()
  return s
}

// ---------------------------------------------------------------------------
// Routing plan

/** One extender in the routing plan: which host of which site holds each end. */
export interface ExtenderTunnelPlan {
  name: string
  a: ExtenderTunnelSide
  b: ExtenderTunnelSide
}

export interface ExtenderTunnelSide {
  site: string
  /** tun device on that site's gateway host. */
  dev: string
  /** This end's address inside the tunnel. */
  tunnelIp: string
  /** This end's underlay address (what the other end's OpenVPN sends to). */
  endpoint: string
}

export interface ExtenderRoutesInput {
  /** Site subnets, e.g. { a: { subnet: '198.18.40.0/24' } }. */
  sites: Record<string, { subnet: string }>
  /** The gateway host of each site that has extenders (the host running its OpenVPN ends). */
  gateways: Record<string, string>
  /** Hosts of each site with their site address. */
  hostsBySite: Record<string, Array<{ name: string, address: string }>>
  tunnels: ExtenderTunnelPlan[]
  /** Default DEFAULT_UNDERLAY_POLICY. */
  policy?: UnderlayPolicy
}

/** What one host needs so that traffic to other sites takes the extenders. */
export interface HostRoutePlan {
  host: string
  site: string
  /** True for a site's gateway host: it forwards between its site and the tunnels. */
  gateway: boolean
  /** Arguments of `ip route replace <args>`, one entry per route. */
  routes: string[][]
  /**
   * Gateways only: remote endpoints whose underlay route is pinned in `policy.table`,
   * looked up by the OpenVPN sockets' mark, so the encrypted packets themselves never
   * enter the tunnel (the next hop is read from the host's routing at apply time).
   */
  underlayPins: string[]
  policy?: UnderlayPolicy
}

function siteCidr (sites: ExtenderRoutesInput['sites'], site: string): string {
  const s = sites[site]
  const c = s !== undefined ? parseCidr(s.subnet) : undefined
  if (c === undefined) throw new ExtenderError(undefined, `site ${site} has no valid subnet`)
  return formatCidr({ address: networkOf(c), prefix: c.prefix })
}

/**
 * Per host, the routes that send traffic for remote sites through the extenders:
 * - on a site's gateway host, each remote site's subnet via the tunnel peer on the tun
 *   device (source: the gateway's site address, so replies come back the same way), plus
 *   an `unreachable` fallback at metric FALLBACK_METRIC so nothing leaks onto the WAN in
 *   clear while the tunnel is down, and an underlay pin for the peer's endpoint;
 * - on every other host of the site, each remote site's subnet via the gateway host's
 *   site address.
 * Sites without an extender between them get no routes (their traffic keeps the WAN).
 * Hosts are keyed by name; the result lists every host of `hostsBySite`.
 */
export function extenderRoutes (input: ExtenderRoutesInput): Record<string, HostRoutePlan> {
  const policy = input.policy ?? DEFAULT_UNDERLAY_POLICY
  const out: Record<string, HostRoutePlan> = {}
  const hostSite = new Map<string, string>()
  for (const [site, hosts] of Object.entries(input.hostsBySite)) {
    for (const h of hosts) {
      if (parseIpv4(h.address) === undefined) throw new ExtenderError(undefined, `host ${h.name} has no valid address ('${h.address}')`)
      if (hostSite.has(h.name)) throw new ExtenderError(undefined, `host ${h.name} is listed in two sites`)
      hostSite.set(h.name, site)
      out[h.name] = { host: h.name, site, gateway: input.gateways[site] === h.name, routes: [], underlayPins: [] }
    }
  }
  const gatewayOf = (site: string, tunnel: string): { name: string, address: string } => {
    const name = input.gateways[site]
    if (name === undefined) throw new ExtenderError(tunnel, `site ${site} has no gateway host`)
    const h = (input.hostsBySite[site] ?? []).find(x => x.name === name)
    if (h === undefined) throw new ExtenderError(tunnel, `gateway ${name} of site ${site} is not among the site's hosts`)
    return h
  }
  const seenPairs = new Set<string>()
  for (const t of input.tunnels) {
    if (t.a.site === t.b.site) throw new ExtenderError(t.name, `both ends are in site ${t.a.site}`)
    const pair = [t.a.site, t.b.site].sort().join('\n')
    if (seenPairs.has(pair)) throw new ExtenderError(t.name, `sites ${t.a.site} and ${t.b.site} already have an extender`)
    seenPairs.add(pair)
    for (const [self, peer] of [[t.a, t.b], [t.b, t.a]] as const) {
      if (parseIpv4(peer.tunnelIp) === undefined) throw new ExtenderError(t.name, `tunnel address '${peer.tunnelIp}' is not IPv4`)
      if (parseIpv4(peer.endpoint) === undefined) throw new ExtenderError(t.name, `endpoint '${peer.endpoint}' is not IPv4`)
      const gw = gatewayOf(self.site, t.name)
      const remote = siteCidr(input.sites, peer.site)
      for (const h of input.hostsBySite[self.site] ?? []) {
        const plan = out[h.name]
        if (plan === undefined) continue
        if (h.name === gw.name) {
          plan.routes.push([remote, 'via', peer.tunnelIp, 'dev', self.dev, 'src', gw.address])
          plan.routes.push(['unreachable', remote, 'metric', String(FALLBACK_METRIC)])
          if (!plan.underlayPins.includes(peer.endpoint)) plan.underlayPins.push(peer.endpoint)
          plan.policy = policy
        } else {
          plan.routes.push([remote, 'via', gw.address])
        }
      }
    }
  }
  return out
}

/** The next hop from `ip route get <address>` output (`<addr> via <gw> dev <dev> src <src> ...`). */
export function parseRouteGet (text: string): { via?: string, dev: string, src?: string } | undefined {
  const line = text.split('\n').find(l => l.trim() !== '')
  if (line === undefined || /^\s*(unreachable|blackhole|prohibit|local)\b/.test(line)) return undefined
  const dev = / dev (\S+)/.exec(line)?.[1]
  if (dev === undefined) return undefined
  const r: { via?: string, dev: string, src?: string } = { dev }
  const via = / via (\S+)/.exec(line)?.[1]
  if (via !== undefined) r.via = via
  const src = / src (\S+)/.exec(line)?.[1]
  if (src !== undefined) r.src = src
  return r
}
