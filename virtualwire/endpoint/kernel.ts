/**
 * The endpoint manager's hands on the kernel: observe links carrying the prefix and apply
 * one planned step, through iproute2 (`ip`, `bridge`). Runs in the caller's network namespace.
 */
import { execFile } from 'node:child_process'
import { SupercloudError } from '../../core/errors.ts'
import { BRIDGE_GROUP_FWD_MASK, type KernelStep, type ObservedLink } from './plan.ts'

export interface EndpointKernel {
  /** Links whose name starts with `prefix`, with their VXLAN default destinations. */
  observe (prefix: string): Promise<ObservedLink[]>
  apply (step: KernelStep): Promise<void>
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

export async function runCmd (argv: string[]): Promise<string> {
  const [cmd, ...args] = argv
  return await new Promise<string>((resolve, reject) => {
    execFile(cmd ?? '', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(new KernelCommandError(argv, stderr !== '' ? stderr : err.message, err))
      else resolve(stdout)
    })
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
    if (!name.startsWith(prefix)) continue
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
  }
}

/** The real kernel, through iproute2. */
export class IpKernel implements EndpointKernel {
  async observe (prefix: string): Promise<ObservedLink[]> {
    const [links, fdb] = await Promise.all([
      runCmd(['ip', '-d', '-j', 'link', 'show']),
      runCmd(['bridge', '-j', 'fdb', 'show'])
    ])
    return parseObservedLinks(links, fdb, prefix)
  }

  async apply (step: KernelStep): Promise<void> {
    for (const argv of stepCommands(step)) await runCmd(argv)
  }
}
