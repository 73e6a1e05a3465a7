/**
 * The `local` driver's Xen host flavour (`hypervisor: { backend: xen }`): the host's network
 * namespace holds a plain L2 bridge joining its site uplink to the tap of a QEMU (TCG) machine
 * running Xen with the dom0 of images/xen-host (node included, for the host agent). The dom0
 * takes the host's site address, so the controller, the other hosts and the WAN reach it
 * exactly like a namespace host. Adopted when it is still running (re-run of `up`).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { OperationOptions } from '../../core/progress.ts'
import { buildXenHostImage } from '../../images/xen-host/build.ts'
import { startXenHost, XEN_HOST_BOOT_MS } from './xen-host.ts'
import { nsPids } from './netns.ts'
import { isAlive, killPids, nsRun, processCmdline, readPidFile, sleep, sshBanner } from './sh.ts'

/** Where a Xen host's dom0 keeps the Blanket layer (agent, images, guests): its tmpfs root. */
export const XEN_HOST_STATE_DIR = '/var/lib/supercloud'
/** The dom0's bridge holding eth0 (guests on the site network attach here). */
export const XEN_HOST_GUEST_BRIDGE = 'xenbr0'
/** dom0's fixed memory: the initramfs root (~150 MB with node), the agent and the endpoint manager. */
export const XEN_DOM0_MIB = 768
/** CPUs of the Xen machine: one for dom0, one for guests. */
export const XEN_HOST_CPUS = 2
/** Xen's own share of the machine beyond dom0 and guests (hypervisor heap, page tables). */
const XEN_OVERHEAD_MIB = 64

export interface XenFlavourParams {
  prefix: string
  host: string
  /** The host's namespace (existing), with `bridge` joining its site uplink. */
  ns: string
  bridge: string
  /** The namespace from which the site network (and so the dom0) is reachable, for SSH. */
  siteNs: string
  /** The dom0's address on the site network, and the site's prefix length and gateway. */
  address: string
  prefixLen: number
  gateway: string
  /** This host's directory on the controller (console log, keys, launch initramfs). */
  hostDir: string
  privateKeyPath: string
  /** Memory offered to guests, bytes (the machine gets dom0's share and Xen's on top). */
  guestMemoryBytes: number
  /** The controller's guest boot timeout: the machine gets at least as long (and at least XEN_HOST_BOOT_MS). */
  bootTimeoutMs?: number
}

export interface XenFlavourHost {
  pid: number
  knownHosts: string
  proxyCommand: string[]
  consoleLog: string
}

function xenDir (p: Pick<XenFlavourParams, 'hostDir'>): string { return join(p.hostDir, 'xen') }

/** Machine memory of a Xen host: guests + dom0 + Xen. */
export function xenMachineMiB (guestMemoryBytes: number): number {
  return Math.ceil(guestMemoryBytes / 1048576) + XEN_DOM0_MIB + XEN_OVERHEAD_MIB
}

/** The QEMU process of this Xen host, when it runs (in its namespace). */
export async function xenHostPid (ns: string, hostDir: string): Promise<number | undefined> {
  const pid = await readPidFile(join(xenDir({ hostDir }), 'qemu.pid'))
  if (pid === undefined || !isAlive(pid)) return undefined
  return (await processCmdline(pid))?.includes('qemu-system') === true && (await nsPids(ns)).includes(pid) ? pid : undefined
}

/** Starts the Xen host, or adopts the one still running from an earlier `up`. */
export async function ensureXenHost (p: XenFlavourParams, opts: OperationOptions = {}): Promise<XenFlavourHost> {
  const dir = xenDir(p)
  const proxyCommand = ['ip', 'netns', 'exec', p.siteNs, 'socat', '-', `TCP:${p.address}:22`]
  const knownHosts = join(dir, 'known_hosts')
  const consoleLog = join(dir, 'console.log')
  const running = await xenHostPid(p.ns, p.hostDir)
  if (running !== undefined) {
    for (let i = 0; i < 3; i++) {
      if (await sshBanner(proxyCommand, 5000)) {
        opts.onProgress?.({ subject: `host ${p.host}`, phase: 'xen', message: `Xen host already running (QEMU ${running})` })
        return { pid: running, knownHosts, proxyCommand, consoleLog }
      }
      await sleep(1000)
    }
  }
  // Not running or not answering: whatever is left of it goes, then a fresh boot.
  const stale: number[] = []
  for (const pid of await nsPids(p.ns)) if ((await processCmdline(pid))?.includes('qemu-system') === true) stale.push(pid)
  await killPids(stale)
  const image = await buildXenHostImage({ withNode: true, ...(opts.signal !== undefined ? { signal: opts.signal } : {}), ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}) })
  const tap = `${p.prefix}xen0`
  await nsRun(p.ns, ['ip', 'link', 'del', tap], { allowFailure: true })
  const h = await startXenHost({
    prefix: p.prefix,
    name: p.host,
    ns: p.ns,
    dir,
    address: `${p.address}/${p.prefixLen}`,
    tapAddress: p.gateway,
    bridge: p.bridge,
    reachNs: p.siteNs,
    tap,
    privateKeyPath: p.privateKeyPath,
    image,
    memoryMiB: xenMachineMiB(p.guestMemoryBytes),
    dom0MemMiB: XEN_DOM0_MIB,
    // HVM with nested paging under TCG (PVH guests, their live migration); SMAP off (docs/xen.md).
    cpuModel: 'max,-smap',
    // Two CPUs, dom0 pinned to the first, guests on the second (drivers/xen guestCpuAffinity):
    // under TCG, dom0 sharing a CPU with PVH vCPUs saw its processes' memory corrupted.
    cpus: XEN_HOST_CPUS,
    xenExtra: ['dom0_vcpus_pin'],
    bootTimeoutMs: Math.max(XEN_HOST_BOOT_MS, p.bootTimeoutMs ?? 0),
    ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {})
  })
  await writeFile(join(dir, 'qemu.pid'), `${h.pid}\n`)
  return { pid: h.pid, knownHosts: h.ssh.hostKeyPath ?? knownHosts, proxyCommand, consoleLog: h.consoleLog }
}

/** Stops the Xen host's QEMU (TERM, then KILL); the namespace goes with the host. */
export async function stopXenHost (ns: string, hostDir: string): Promise<void> {
  const pid = await xenHostPid(ns, hostDir)
  if (pid !== undefined) await killPids([pid], 5000)
}
