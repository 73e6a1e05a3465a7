/**
 * The Blanket bootstrap: over SSH only, check a host, install what is missing, upload and
 * start the host agent, upload the guest image, and choose the hypervisor mode
 * (KVM only if a test guest actually boots under it, else QEMU TCG).
 */
import { IMDS_URL } from '../../drivers/ec2/imds.ts'
import type { HostRecord } from '../../drivers/cloud.ts'
import type { Accel, HypervisorKind } from '../../core/spec.ts'
import type { OperationOptions, ProgressPhase } from '../../core/progress.ts'
import { AgentClient } from '../agent/client.ts'
import type { AccelChoice, HelloResult } from '../agent/protocol.ts'
import { agentBundle } from '../agent/bundle.ts'
import { BootstrapError, SupercloudError, throwIfAborted } from '../../core/errors.ts'
import { shq, type SshConnection } from '../../core/ssh.ts'
import { ensureImageOnHost } from './images.ts'
import { daemonStartScript } from './daemon-script.ts'

/** Debian packages that provide each command the Blanket layer needs on a host. */
export const HOST_PACKAGES: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  ip: 'iproute2',
  node: 'nodejs',
  nft: 'nftables'
}

/** What a Xen host (`hypervisor: xen`) must have: Xen's toolstack instead of QEMU (the dom0 image ships them). */
export const XEN_HOST_PACKAGES: Record<string, string> = {
  xl: 'xen-utils-4.17',
  ip: 'iproute2',
  node: 'nodejs'
}

export interface GuestImageFiles {
  id: string
  kernel: string
  initrd: string
  /** The kernel uncompressed for a direct PVH boot on QEMU hosts, gzip'ed for the upload (images/guest/build.ts). */
  pvh?: { gz: string }
}

export interface BootstrapOptions extends OperationOptions {
  accel: Accel
  /** The host's hypervisor backend (default qemu). `xen`: the host must already run Xen (a dom0). */
  hypervisor?: HypervisorKind
  /** Install missing Debian packages with apt-get (default true). */
  install?: boolean
  /** QEMU binary on the host (default qemu-system-x86_64 from PATH). */
  qemuBinary?: string
  /** The builtin guest image, uploaded to a QEMU host (also used by the KVM probe); a Xen host gets it with its first guest. */
  image?: GuestImageFiles
  /** How long the KVM probe waits for the probe guest (default 20 s). */
  probeTimeoutMs?: number
}

export interface BootstrapResult {
  agent: AgentClient
  hello: HelloResult
  accel: AccelChoice
  /** Paths of the uploaded image on the host. */
  image?: { kernel: string, initrd: string }
}

/** Hypervisor missing on a host and not installable. */
export class HypervisorMissingOnHostError extends SupercloudError {
  constructor (host: string, detail: string, hypervisor = 'QEMU') {
    super('SC_HYPERVISOR_MISSING', `${hypervisor} is not available on host ${host}: ${detail}`)
  }
}

/** Parses the output of the check script: one `name=path-or-empty` line per command. */
export function parseCheck (out: string): Record<string, string> {
  const r: Record<string, string> = {}
  for (const line of out.split('\n')) {
    const i = line.indexOf('=')
    if (i > 0) r[line.slice(0, i)] = line.slice(i + 1).trim()
  }
  return r
}

/**
 * An ec2 host's agent watches the instance metadata for spot interruptions (agent/interruption-watch.ts);
 * SUPERCLOUD_IMDS_INTERVAL_MS sets its poll interval (default 5 s; a knob for tests).
 */
function imdsArgs (host: HostRecord): string {
  if (host.driver !== 'ec2') return ''
  const ms = process.env.SUPERCLOUD_IMDS_INTERVAL_MS
  return ` --imds ${IMDS_URL}${ms !== undefined && /^\d+$/.test(ms) ? ` --imds-interval ${ms}` : ''}`
}

export async function bootstrapHost (host: HostRecord, ssh: SshConnection, opts: BootstrapOptions): Promise<BootstrapResult> {
  const say = (phase: ProgressPhase, message: string): void => opts.onProgress?.({ subject: `host ${host.name}`, phase, message })
  const dir = host.stateDir
  const qemu = opts.qemuBinary ?? 'qemu-system-x86_64'

  const xen = opts.hypervisor === 'xen'
  const needed = xen ? XEN_HOST_PACKAGES : HOST_PACKAGES
  say('check', xen ? 'checking host (Xen dom0)' : 'checking host')
  const checkScript = [
    ...Object.keys(needed).map(c => `echo "${c}=$(command -v ${c === 'qemu-system-x86_64' ? shq(qemu) : c} 2>/dev/null)"`),
    ...(xen ? ['echo "xen_running=$(xl info >/dev/null 2>&1 && echo yes)"'] : []),
    'echo "apt=$(command -v apt-get 2>/dev/null)"',
    'echo "uid=$(id -u)"',
    'echo "node_major=$(node -p process.versions.node.split\\(\\".\\"\\)[0] 2>/dev/null)"'
  ].join('; ')
  let found = parseCheck((await ssh.exec(checkScript, opts.signal !== undefined ? { signal: opts.signal } : {})).stdout)
  if (found.uid !== '0') throw new BootstrapError(host.name, `the Blanket layer needs root on the host (logged in as uid ${found.uid ?? '?'})`)
  if (xen && ((found.xl ?? '') === '' || found.xen_running !== 'yes')) {
    throw new HypervisorMissingOnHostError(host.name, (found.xl ?? '') === ''
      ? 'the spec asks for hypervisor: xen but the host has no Xen toolstack (xl); boot it into Xen first (docs/xen-real-hosts.md)'
      : 'the spec asks for hypervisor: xen but `xl info` fails: the host is not running as a Xen dom0', 'Xen')
  }
  let missing = Object.keys(needed).filter(c => (found[c] ?? '') === '')
  if (missing.length > 0) {
    const canInstall = opts.install !== false && (found.apt ?? '') !== '' && !(missing.includes('qemu-system-x86_64') && qemu.includes('/'))
    if (!canInstall) {
      if (missing.includes('qemu-system-x86_64')) throw new HypervisorMissingOnHostError(host.name, `${qemu} not found${opts.install === false ? ' and installing is disabled' : ''}; install the Debian package qemu-system-x86`)
      throw new BootstrapError(host.name, `missing commands: ${missing.join(', ')}; install Debian packages ${missing.map(m => needed[m]).join(' ')}`)
    }
    const pkgs = [...new Set(missing.map(m => needed[m] ?? m))]
    say('install', `installing ${pkgs.join(' ')}`)
    await ssh.exec(`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs.join(' ')}`, { timeoutMs: 20 * 60000, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
    found = parseCheck((await ssh.exec(checkScript)).stdout)
    missing = Object.keys(needed).filter(c => (found[c] ?? '') === '')
    if (missing.length > 0) throw new BootstrapError(host.name, `still missing after install: ${missing.join(', ')}`)
  }
  if (Number(found.node_major ?? '0') < 18) throw new BootstrapError(host.name, `the agent needs Node.js >= 18 on the host, found ${found.node_major ?? 'none'}`)
  throwIfAborted(opts.signal, `bootstrap of ${host.name}`)

  // Agent: upload when the running build differs, (re)start, connect.
  const bundle = await agentBundle()
  await ssh.exec(`mkdir -p ${shq(dir)}/images ${shq(dir)}/vms && chmod 700 ${shq(dir)}`)
  const remoteBuild = (await ssh.exec(`cat ${shq(dir)}/agent.build 2>/dev/null`, { allowFailure: true })).stdout.trim()
  const running = (await ssh.exec(`p=$(cat ${shq(dir)}/agent.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null && test -S ${shq(dir)}/agent.sock && echo yes`, { allowFailure: true })).stdout.trim() === 'yes'
  if (remoteBuild !== bundle.hash || !running) {
    say('agent', remoteBuild === bundle.hash ? 'starting host agent' : `installing host agent ${bundle.hash}`)
    if (remoteBuild !== bundle.hash) {
      await ssh.writeFile(`${dir}/agent.mjs`, bundle.code)
      await ssh.exec(`echo ${bundle.hash} > ${shq(dir)}/agent.build`)
    }
    const start = daemonStartScript({
      dir,
      pidFile: 'agent.pid',
      prepare: ['rm -f agent.sock agent.pid'],
      command: `node agent.mjs --dir ${shq(dir)} --bridge ${shq(host.guestBridge)} --qemu ${shq(qemu)} --hypervisor ${xen ? 'xen' : 'qemu'} --build ${bundle.hash}${imdsArgs(host)}`,
      log: 'agent.log',
      ready: 'test -S agent.sock && test -s agent.pid',
      what: 'agent'
    })
    await ssh.exec(start)
  }
  const agent = await AgentClient.connect(host.name, ssh, `${dir}/agent.sock`)
  try {
    const hello = await agent.hello()
    if (hello.build !== bundle.hash) throw new BootstrapError(host.name, `agent build ${hello.build} answered, expected ${bundle.hash}`)

    // Guest image (also the KVM probe's guest). A Xen host's probe asks xl, not a guest: its
    // guests get their files when they are launched (in a TCG dom0 this upload cost ~5 s a host).
    let image: BootstrapResult['image']
    if (opts.image !== undefined && !xen) {
      const files = await ensureImageOnHost(ssh, dir, opts.image.id, { vmlinuz: opts.image.kernel, 'initrd.img': opts.image.initrd }, opts)
      image = { kernel: files.vmlinuz ?? '', initrd: files['initrd.img'] ?? '' }
    }

    // Hypervisor mode.
    let accel = hello.accel
    // A cached choice is reused when it answers the same question: a probe for 'auto', the mode itself otherwise.
    const reusable = accel !== undefined && (opts.accel === 'auto' ? accel.probed : opts.accel === accel.mode)
    if (!reusable) {
      if (!xen && opts.accel !== 'tcg' && image === undefined) throw new BootstrapError(host.name, 'the KVM probe needs the builtin guest image')
      say('probe', xen ? 'asking Xen what it offers (xl info)' : opts.accel === 'tcg' ? 'using TCG (forced by spec)' : 'probing KVM with a test guest')
      accel = await agent.probe({ kernel: image?.kernel ?? '', initrd: image?.initrd ?? '', timeoutMs: opts.probeTimeoutMs ?? 20000, want: opts.accel }, opts.signal)
    }
    if (accel === undefined) throw new BootstrapError(host.name, 'no hypervisor mode chosen')
    say('ready', `agent ${hello.build} up, hypervisor ${accel.mode} (${accel.reason})`)
    const result: BootstrapResult = { agent, hello, accel }
    if (image !== undefined) result.image = image
    return result
  } catch (err) {
    agent.close()
    throw err
  }
}
