/**
 * The endpoint manager's hands on the kernel: observe links carrying the prefix and apply
 * one planned step, through iproute2 (`ip`, `bridge`). Runs in the caller's network namespace.
 */
import { execFile, spawn } from 'node:child_process'
import { SupercloudError } from '../../core/errors.ts'
import { FAST_PATH_PREF } from './fastpath.ts'
import { BRIDGE_GROUP_FWD_MASK, type KernelStep, type ObservedLink } from './plan.ts'

export interface EndpointKernel {
  /**
   * Links whose name starts with `prefix` or that are enslaved to a bridge whose name does,
   * with their VXLAN default destinations and fast-path filters.
   */
  observe (prefix: string): Promise<ObservedLink[]>
  apply (step: KernelStep): Promise<void>
  /** Calls `onChange` whenever a link changes (added, deleted, enslaved, released); returns stop. */
  watch? (onChange: () => void): () => void
}

/** An `ip`/`bridge` command failed; message carries the command and its stderr. */
export class KernelCommandError extends SupercloudError {
  readonly argv: string[]
  readonly stderr: string
  constructor (argv: string[], stderr: string, cause?: unknown) {
    super('SC_VW_KERNEL', `\`${argv.join(' ')}\` failed: ${stderr.trim().split('\n').slice(-3).join(' | ')}`, { cause })
    this.argv = argv
    this.stderr = stderr
  }
}

/** Runs argv (with `input` on stdin when given); resolves with stdout. */
export async function runCmd (argv: string[], input?: string): Promise<string> {
  const [cmd, ...args] = argv
  return await new Promise<string>((resolve, reject) => {
    const child = execFile(cmd ?? '', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(new KernelCommandError(argv, stderr !== '' ? stderr : err.message, err))
      else resolve(stdout)
    })
    if (input !== undefined) child.stdin?.end(input)
  })
}

interface IpLinkJson {
  ifname?: string
  mtu?: number
  flags?: string[]
  master?: string
  linkinfo?: { info_kind?: string, info_data?: Record<string, unknown> }
}

interface FdbJson {
  mac?: string
  ifname?: string
  dst?: string
}

const ZERO_MAC = '00:00:00:00:00:00'

/** Parses `ip -d -j link show` and `bridge -j fdb show` output into observed links (pure). */
export function parseObservedLinks (linkJson: string, fdbJson: string, prefix: string): ObservedLink[] {
  const links = (JSON.parse(linkJson === '' ? '[]' : linkJson) as IpLinkJson[])
  const fdb = (JSON.parse(fdbJson === '' ? '[]' : fdbJson) as FdbJson[])
  const out: ObservedLink[] = []
  for (const l of links) {
    const name = l.ifname ?? ''
    if (!name.startsWith(prefix) && !(l.master ?? '').startsWith(prefix)) continue
    const kind = l.linkinfo?.info_kind ?? ''
    const data = l.linkinfo?.info_data ?? {}
    const o: ObservedLink = { name, kind, mtu: l.mtu ?? 0, up: (l.flags ?? []).includes('UP') }
    if (l.master !== undefined) o.master = l.master
    if (kind === 'vxlan') {
      o.vxlan = {
        id: Number(data.id),
        port: Number(data.port),
        learning: data.learning === true,
        ...(typeof data.local === 'string' ? { local: data.local } : {})
      }
      o.defaultDsts = fdb.filter(e => e.ifname === name && e.mac === ZERO_MAC && typeof e.dst === 'string').map(e => e.dst as string)
    }
    if (kind === 'bridge') {
      o.bridge = {
        vlanFiltering: Number(data.vlan_filtering ?? 0) !== 0,
        mcastSnooping: Number(data.mcast_snooping ?? 0) !== 0,
        stp: Number(data.stp_state ?? 0) !== 0,
        groupFwdMask: Number(data.group_fwd_mask ?? 0),
        nfCall: [data.nf_call_iptables, data.nf_call_ip6tables, data.nf_call_arptables].some(v => Number(v ?? 0) !== 0)
      }
    }
    out.push(o)
  }
  return out
}

interface TcJson {
  dev?: string
  kind?: string
  pref?: number
  options?: { actions?: Array<{ kind?: string, mirred_action?: string, direction?: string, to_dev?: string }> }
}

/** Devices with a clsact qdisc, from `tc -j qdisc show` (pure). */
export function parseClsactDevices (qdiscJson: string): Set<string> {
  const q = JSON.parse(qdiscJson.trim() === '' ? '[]' : qdiscJson) as TcJson[]
  return new Set(q.filter(x => x.kind === 'clsact' && typeof x.dev === 'string').map(x => x.dev as string))
}

/**
 * Target of the fast-path filter (priority FAST_PATH_PREF, mirred egress redirect) in
 * `tc -j filter show dev <d> ingress` output; undefined when there is none (pure).
 */
export function parseFastPathRedirect (filterJson: string): string | undefined {
  const f = JSON.parse(filterJson.trim() === '' ? '[]' : filterJson) as TcJson[]
  for (const x of f) {
    if (x.pref !== FAST_PATH_PREF) continue
    for (const a of x.options?.actions ?? []) {
      if (a.kind === 'mirred' && a.mirred_action === 'redirect' && a.direction === 'egress' && typeof a.to_dev === 'string') return a.to_dev
    }
  }
  return undefined
}

const FAST_PATH_FILTER = ['pref', String(FAST_PATH_PREF), 'protocol', 'all']

/** Bridge options that keep the endpoint bridge transparent (pure, shared by add and tune). */
export function bridgeOptionArgs (): string[] {
  return [
    'stp_state', '0', 'mcast_snooping', '0', 'group_fwd_mask', `0x${BRIDGE_GROUP_FWD_MASK.toString(16)}`,
    'nf_call_iptables', '0', 'nf_call_ip6tables', '0', 'nf_call_arptables', '0'
  ]
}

/** The iproute2 commands of one step (pure). */
export function stepCommands (s: KernelStep): string[][] {
  switch (s.op) {
    case 'addBridge':
      // vlan_filtering defaults to 0; it is not passed because kernels without
      // CONFIG_BRIDGE_VLAN_FILTERING refuse the option even when set to 0.
      return [['ip', 'link', 'add', s.name, 'mtu', String(s.mtu), 'type', 'bridge', ...bridgeOptionArgs()]]
    case 'tuneBridge':
      return [
        ...(s.vlanFilteringOff ? [['ip', 'link', 'set', s.name, 'type', 'bridge', 'vlan_filtering', '0']] : []),
        ['ip', 'link', 'set', s.name, 'type', 'bridge', ...bridgeOptionArgs()]
      ]
    case 'addVxlan':
      return [['ip', 'link', 'add', s.name, 'mtu', String(s.mtu), 'type', 'vxlan', 'id', String(s.id), 'local', s.local, 'dstport', String(s.port), 'nolearning']]
    case 'setMtu': return [['ip', 'link', 'set', s.name, 'mtu', String(s.mtu)]]
    case 'enslave': return [['ip', 'link', 'set', s.name, 'master', s.bridge]]
    case 'up': return [['ip', 'link', 'set', s.name, 'up']]
    // `bridge fdb replace` refuses the all-zeros entry on some kernels; append + del instead.
    case 'addDefaultDst': return [['bridge', 'fdb', 'append', ZERO_MAC, 'dev', s.name, 'dst', s.ip]]
    case 'delDefaultDst': return [['bridge', 'fdb', 'del', ZERO_MAC, 'dev', s.name, 'dst', s.ip]]
    case 'delLink': return [['ip', 'link', 'del', s.name]]
    case 'redirect':
      return [
        ...(s.addQdisc ? [['tc', 'qdisc', 'add', 'dev', s.from, 'clsact']] : []),
        ...(s.replace ? [['tc', 'filter', 'del', 'dev', s.from, 'ingress', ...FAST_PATH_FILTER]] : []),
        ['tc', 'filter', 'add', 'dev', s.from, 'ingress', ...FAST_PATH_FILTER, 'u32', 'match', 'u32', '0', '0', 'action', 'mirred', 'egress', 'redirect', 'dev', s.to]
      ]
    case 'unredirect': return [['tc', 'filter', 'del', 'dev', s.dev, 'ingress', ...FAST_PATH_FILTER]]
  }
}

/** The real kernel, through iproute2. */
/**
 * Why this host cannot run the connector fast path (tc clsact + mirred), from `tc -V`'s output
 * (undefined: it can). BusyBox's tc, the one a minimal image such as the Xen dom0's has, knows
 * no clsact: every fast-path step would fail and be retried on each sync.
 */
export function fastPathUnsupported (tcVersion: string | undefined): string | undefined {
  if (tcVersion === undefined) return 'tc is not installed (Debian package iproute2)'
  if (!/iproute2/.test(tcVersion)) return 'tc is not iproute2\'s (`tc -V` does not name it; BusyBox\'s tc, say): the fast path needs its clsact and mirred'
  return undefined
}

/** `tc -V` of this host, or undefined when tc cannot be run. */
export async function tcVersion (): Promise<string | undefined> {
  try {
    return await runCmd(['tc', '-V'])
  } catch (err) {
    // BusyBox's tc does not know -V: it prints its usage and exits non-zero.
    const msg = (err as Error).message
    return /ENOENT|not found/.test(msg) ? undefined : msg
  }
}

export class IpKernel implements EndpointKernel {
  async observe (prefix: string): Promise<ObservedLink[]> {
    const [links, fdb, qdiscs] = await Promise.all([
      runCmd(['ip', '-d', '-j', 'link', 'show']),
      runCmd(['bridge', '-j', 'fdb', 'show']),
      runCmd(['tc', '-j', 'qdisc', 'show']).catch(() => '[]')
    ])
    const observed = parseObservedLinks(links, fdb, prefix)
    const clsact = parseClsactDevices(qdiscs)
    const withQdisc = observed.filter(l => clsact.has(l.name))
    const filters = await showIngressFilters(withQdisc.map(l => l.name))
    for (const l of withQdisc) {
      l.clsact = true
      const r = filters.get(l.name)
      if (r !== undefined) l.redirect = r
    }
    return observed
  }

  async apply (step: KernelStep): Promise<void> {
    for (const argv of stepCommands(step)) await runCmd(argv)
  }

  /** `ip -o monitor link` in this network namespace, restarted if it dies. */
  watch (onChange: () => void): () => void {
    let stopped = false
    let child: ReturnType<typeof spawn> | undefined
    let timer: NodeJS.Timeout | undefined
    const start = (): void => {
      child = spawn('ip', ['-o', 'monitor', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] })
      child.stdout?.on('data', () => { onChange() })
      child.on('error', () => {})
      child.on('exit', () => { if (!stopped) timer = setTimeout(start, 1000) })
    }
    start()
    return () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
      child?.kill()
    }
  }
}

/**
 * Fast-path filter targets of `devs` (one `tc -b` batch; per device when the batch's output
 * does not line up, e.g. a device vanished meanwhile).
 */
async function showIngressFilters (devs: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  if (devs.length === 0) return out
  const put = (dev: string, json: string): void => {
    const r = parseFastPathRedirect(json)
    if (r !== undefined) out.set(dev, r)
  }
  const batch = await runCmd(['tc', '-j', '-force', '-b', '-'], devs.map(d => `filter show dev ${d} ingress\n`).join('')).catch(() => '')
  const lines = batch.split('\n').filter(l => l.trim() !== '')
  if (lines.length === devs.length) {
    devs.forEach((d, i) => { put(d, lines[i] ?? '[]') })
    return out
  }
  for (const d of devs) put(d, await runCmd(['tc', '-j', 'filter', 'show', 'dev', d, 'ingress']).catch(() => '[]'))
  return out
}
