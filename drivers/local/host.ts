/**
 * The hosts of the local driver: a namespace on its site's bridge with its own sshd (sshd.ts),
 * or, for the Xen flavour, QEMU running Xen whose dom0 has the host's address (xen-flavour.ts).
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext, HostHealth, HostRecord, SshEndpoint } from '../cloud.ts'
import type { HostSpec } from '../../core/spec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { throwIfAborted } from '../../core/errors.ts'
import { HOST_BRIDGE, HOST_UPLINK, SITE_BRIDGE, hostNs, siteSideLink, checkPrefix } from './names.ts'
import { localSites, planNetwork, sitePlan, type SitePlan } from './plan.ts'
import { localNetworkName } from './uplink.ts'
import { addVeth, destroyNs, ensureNs, ip, linkExists, nsExists, pidInNs } from './netns.ts'
import { readPidFile, run } from './sh.ts'
import { XEN_HOST_GUEST_BRIDGE, XEN_HOST_STATE_DIR, ensureXenHost, stopXenHost, xenHostPid } from './xen-flavour.ts'
import { hostDirOf, progress } from './files.ts'
import { forgetHostAddress, hostAddress } from './host-addresses.ts'
import { currentUplink, ensureBridge, setOnlyAddress } from './network.ts'
import { ensureSshd, waitForSshd } from './sshd.ts'

/** What the local driver keeps in HostRecord.driverData. */
export interface LocalHostData {
  ns: string
  siteNs: string
  siteLink: string
  hostDir: string
  sshdDir: string
  sshdConfig: string
  sshdPidFile: string
  /** Xen host flavour: the namespace's bridge carries the dom0 (QEMU running Xen), which has the host's address. */
  xen?: { qemuPid: number, consoleLog: string }
}

export async function createHost (ctx: DriverContext, spec: HostSpec, ensureNetwork: (ctx: DriverContext, opts?: OperationOptions) => Promise<void>, opts?: OperationOptions): Promise<HostRecord> {
  const subject = `host ${spec.name}`
  const what = `creating host ${spec.name}`
  checkPrefix(ctx.prefix)
  const plan = planNetwork(ctx.prefix, localSites(ctx.sites, ctx.hosts), ctx.wan)
  const sp = sitePlan(plan, spec.site)
  if (!await nsExists(sp.ns) || !await nsExists(plan.wanNs)) await ensureNetwork(ctx, opts)
  throwIfAborted(opts?.signal, what)
  const address = await hostAddress(ctx, sp, spec)
  const ns = hostNs(ctx.prefix, spec.name)
  const siteLink = siteSideLink(spec.name)
  const hostDir = hostDirOf(ctx, spec.name)
  const sshdDir = join(hostDir, 'sshd')
  await mkdir(hostDir, { recursive: true })

  progress(opts, subject, 'namespace', `namespace ${ns}, ${address} on site ${sp.site}`)
  await ensureNs(ns)
  if (!await linkExists(ns, HOST_UPLINK) || !await linkExists(sp.ns, siteLink)) {
    if (await linkExists(ns, HOST_UPLINK)) await ip(ns, ['link', 'del', HOST_UPLINK])
    if (await linkExists(sp.ns, siteLink)) await ip(sp.ns, ['link', 'del', siteLink])
    await addVeth(sp.ns, siteLink, ns, HOST_UPLINK)
  }
  await ip(sp.ns, ['link', 'set', siteLink, 'master', SITE_BRIDGE, 'up'])
  await ensureBridge(ns, HOST_BRIDGE)
  if (spec.hypervisor.backend === 'xen') return await createXenFlavour(ctx, spec, { ns, sp, address, siteLink, hostDir, sshdDir }, opts)
  // A MAC derived from the address: a host rebuilt after it vanished answers with the MAC its
  // neighbours (site router, other hosts, their VXLAN peers) still have cached.
  await ip(ns, ['link', 'set', HOST_BRIDGE, 'address', hostMac(address)])
  await run(['ip', '-n', sp.ns, 'neigh', 'flush', 'to', address], { allowFailure: true })
  await ip(ns, ['link', 'set', HOST_UPLINK, 'master', HOST_BRIDGE, 'up'])
  await setOnlyAddress(ns, HOST_BRIDGE, `${address}/${sp.prefixLen}`)
  await ip(ns, ['route', 'replace', 'default', 'via', sp.gateway, 'dev', HOST_BRIDGE])
  throwIfAborted(opts?.signal, what)

  const sshd = await ensureSshd(ctx, spec, ns, address, sshdDir, opts)
  const proxyCommand = ['ip', 'netns', 'exec', sp.ns, 'socat', '-', `TCP:${address}:22`]
  progress(opts, subject, 'sshd', 'waiting for sshd to accept connections')
  await waitForSshd(spec.name, address, proxyCommand, sshdDir, what, opts?.signal)
  const data: LocalHostData = { ns, siteNs: sp.ns, siteLink, hostDir, sshdDir, sshdConfig: sshd.config, sshdPidFile: sshd.pidFile }
  return await hostRecord(ctx, spec, address, { host: address, port: 22, username: 'root', privateKeyPath: ctx.keyPath, hostKeyPath: sshd.knownHosts, proxyCommand }, hostDir, HOST_BRIDGE, data)
}

export async function describeHost (ctx: DriverContext, record: HostRecord): Promise<HostHealth> {
  const d = record.driverData as unknown as Partial<LocalHostData>
  const ns = d.ns ?? hostNs(ctx.prefix, record.name)
  if (!await nsExists(ns)) return 'gone'
  if (d.xen !== undefined) return await xenHostPid(ns, d.hostDir ?? hostDirOf(ctx, record.name)) !== undefined ? 'running' : 'unreachable'
  const pid = await readPidFile(d.sshdPidFile ?? join(hostDirOf(ctx, record.name), 'sshd', 'sshd.pid'))
  return pid !== undefined && await pidInNs(pid, ns) ? 'running' : 'unreachable'
}

export async function destroyHost (ctx: DriverContext, record: HostRecord, opts?: OperationOptions): Promise<void> {
  const d = record.driverData as unknown as Partial<LocalHostData>
  const ns = d.ns ?? hostNs(ctx.prefix, record.name)
  if (d.xen !== undefined && await nsExists(ns)) {
    progress(opts, `host ${record.name}`, 'destroy', 'stopping the Xen host')
    await stopXenHost(ns, d.hostDir ?? hostDirOf(ctx, record.name))
  }
  progress(opts, `host ${record.name}`, 'destroy', `deleting namespace ${ns}`)
  await destroyNs(ns)
  if (d.siteNs !== undefined && d.siteLink !== undefined && await nsExists(d.siteNs) && await linkExists(d.siteNs, d.siteLink)) {
    await run(['ip', '-n', d.siteNs, 'link', 'del', d.siteLink], { allowFailure: true })
  }
  await rm(d.hostDir ?? hostDirOf(ctx, record.name), { recursive: true, force: true })
  await forgetHostAddress(ctx, record.site, record.name)
}

/**
 * A Xen host: the namespace's bridge is plain L2 (site uplink + the Xen machine's tap, no
 * address); the dom0 has the host's address, its sshd is the host's (drivers/local/xen-flavour.ts).
 */
async function createXenFlavour (ctx: DriverContext, spec: HostSpec, n: { ns: string, sp: SitePlan, address: string, siteLink: string, hostDir: string, sshdDir: string }, opts?: OperationOptions): Promise<HostRecord> {
  progress(opts, `host ${spec.name}`, 'xen', 'Xen host: QEMU (TCG) running Xen with a dom0 on the site network')
  await run(['ip', '-n', n.ns, 'addr', 'flush', 'dev', HOST_BRIDGE], { allowFailure: true })
  await ip(n.ns, ['link', 'set', HOST_UPLINK, 'master', HOST_BRIDGE, 'up'])
  await run(['ip', '-n', n.sp.ns, 'neigh', 'flush', 'to', n.address], { allowFailure: true })
  const x = await ensureXenHost({
    prefix: ctx.prefix,
    host: spec.name,
    ns: n.ns,
    bridge: HOST_BRIDGE,
    siteNs: n.sp.ns,
    address: n.address,
    prefixLen: n.sp.prefixLen,
    gateway: n.sp.gateway,
    hostDir: n.hostDir,
    privateKeyPath: ctx.keyPath,
    guestMemoryBytes: spec.memoryBytes,
    ...(ctx.bootTimeoutMs !== undefined ? { bootTimeoutMs: ctx.bootTimeoutMs } : {})
  }, opts ?? {})
  const data: LocalHostData = { ns: n.ns, siteNs: n.sp.ns, siteLink: n.siteLink, hostDir: n.hostDir, sshdDir: n.sshdDir, sshdConfig: '', sshdPidFile: '', xen: { qemuPid: x.pid, consoleLog: x.consoleLog } }
  const ssh: SshEndpoint = { host: n.address, port: 22, username: 'root', privateKeyPath: ctx.keyPath, hostKeyPath: x.knownHosts, proxyCommand: x.proxyCommand, slow: { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 } }
  return await hostRecord(ctx, spec, n.address, ssh, XEN_HOST_STATE_DIR, XEN_HOST_GUEST_BRIDGE, data)
}

/** The record of a local host (either flavour); hosts of a supercloud with an uplink are reachable from outside too. */
async function hostRecord (ctx: DriverContext, spec: HostSpec, address: string, ssh: SshEndpoint, stateDir: string, guestBridge: string, data: LocalHostData): Promise<HostRecord> {
  const uplink = await currentUplink(ctx)
  return {
    ...(uplink !== undefined ? { reach: { network: localNetworkName(ctx.prefix), publicAddress: uplink.publicAddress } } : {}),
    name: spec.name,
    site: spec.site,
    driver: 'local',
    address,
    ssh,
    stateDir,
    guestBridge,
    driverData: { ...data }
  }
}

/** Locally administered MAC for a host bridge, from its IPv4 address (02:53:a:b:c:d). */
export function hostMac (address: string): string {
  return ['02', '53', ...address.split('.').map(o => Number(o).toString(16).padStart(2, '0'))].join(':')
}
