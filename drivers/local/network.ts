/**
 * The local driver's network: the WAN namespace, a namespace per site with its bridge and
 * routed uplink to the WAN (tbf bandwidth), the WAN delay (wan-delay.ts) and the optional
 * uplink to a LAN outside (uplink.ts). Topology and address plan: docs/drivers.md.
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext } from '../cloud.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { LocalDriverError, throwIfAborted } from '../../core/errors.ts'
import { SITE_BRIDGE, SITE_UPLINK } from './names.ts'
import { localSites, planNetwork, tbfArgs, type NetworkPlan, type SitePlan } from './plan.ts'
import { UPLINK_ENV, WAN_UPLINK, parseUplink, uplinkNftRules, uplinkPeerLink, type UplinkSpec } from './uplink.ts'
import { addVeth, destroyNs, ensureNs, ip, linkExists, listNamespaces, nsExists, sysctl } from './netns.ts'
import { nsRun, run } from './sh.ts'
import { driverDir, progress, readJson, writeIfChanged } from './files.ts'
import { ensureDelay, stopRelay } from './wan-delay.ts'

export async function ensureBridge (ns: string, name: string): Promise<void> {
  if (!await linkExists(ns, name)) await ip(ns, ['link', 'add', name, 'type', 'bridge'])
  await ip(ns, ['link', 'set', name, 'up'])
}

/** Makes `cidr` the only IPv4 address on `dev`. */
export async function setOnlyAddress (ns: string, dev: string, cidr: string): Promise<void> {
  const r = await run(['ip', '-n', ns, '-4', '-o', 'addr', 'show', 'dev', dev])
  for (const line of r.stdout.split('\n')) {
    const have = /\sinet\s+(\S+)/.exec(line)?.[1]
    if (have !== undefined && have !== cidr) await ip(ns, ['addr', 'del', have, 'dev', dev])
  }
  await ip(ns, ['addr', 'replace', cidr, 'dev', dev])
}

async function ensureSite (plan: NetworkPlan, sp: SitePlan): Promise<void> {
  await ensureNs(sp.ns)
  await sysctl(sp.ns, 'net.ipv4.ip_forward', '1')
  await ensureBridge(sp.ns, SITE_BRIDGE)
  await setOnlyAddress(sp.ns, SITE_BRIDGE, `${sp.gateway}/${sp.prefixLen}`)
  const wanEnd = await linkExists(plan.wanNs, sp.wanLink)
  const siteEnd = await linkExists(sp.ns, SITE_UPLINK)
  if (!wanEnd || !siteEnd) {
    if (wanEnd) await ip(plan.wanNs, ['link', 'del', sp.wanLink])
    if (siteEnd) await ip(sp.ns, ['link', 'del', SITE_UPLINK])
    await addVeth(plan.wanNs, sp.wanLink, sp.ns, SITE_UPLINK)
  }
  await setOnlyAddress(plan.wanNs, sp.wanLink, `${sp.transitWan}/30`)
  await setOnlyAddress(sp.ns, SITE_UPLINK, `${sp.transitSite}/30`)
  await ip(plan.wanNs, ['link', 'set', sp.wanLink, 'up'])
  await ip(sp.ns, ['link', 'set', SITE_UPLINK, 'up'])
  await ip(sp.ns, ['route', 'replace', 'default', 'via', sp.transitWan, 'dev', SITE_UPLINK])
  await ip(plan.wanNs, ['route', 'replace', sp.subnet, 'via', sp.transitSite, 'dev', sp.wanLink])
  if (plan.bandwidthBps !== undefined) {
    await nsRun(plan.wanNs, tbfArgs(sp.wanLink, plan.bandwidthBps))
  } else {
    await nsRun(plan.wanNs, ['tc', 'qdisc', 'del', 'dev', sp.wanLink, 'root'], { allowFailure: true })
  }
}

/** The uplink asked for in the environment (remembered), else the one remembered from an earlier run. */
export async function currentUplink (ctx: DriverContext): Promise<UplinkSpec | undefined> {
  const env = process.env[UPLINK_ENV]
  if (env !== undefined && env !== '') return parseUplink(env)
  return await readJson<UplinkSpec | undefined>(join(driverDir(ctx), 'uplink.json'), undefined)
}

/** Joins the WAN namespace to the uplink's LAN bridge: up0 with its address, default route, masquerade. */
async function ensureUplink (ctx: DriverContext, plan: NetworkPlan, u: UplinkSpec, opts?: OperationOptions): Promise<void> {
  if (!await nsExists(u.ns)) throw new LocalDriverError(`${UPLINK_ENV}: namespace ${u.ns} does not exist`)
  if (!await linkExists(u.ns, u.bridge)) throw new LocalDriverError(`${UPLINK_ENV}: namespace ${u.ns} has no interface ${u.bridge}`)
  progress(opts, 'network', 'uplink', `WAN uplink ${u.address} on ${u.ns}/${u.bridge}, public address ${u.publicAddress}`)
  const peer = uplinkPeerLink(ctx.prefix)
  const wanEnd = await linkExists(plan.wanNs, WAN_UPLINK)
  const peerEnd = await linkExists(u.ns, peer)
  if (!wanEnd || !peerEnd) {
    if (wanEnd) await ip(plan.wanNs, ['link', 'del', WAN_UPLINK])
    if (peerEnd) await ip(u.ns, ['link', 'del', peer])
    await addVeth(plan.wanNs, WAN_UPLINK, u.ns, peer)
  }
  await ip(u.ns, ['link', 'set', peer, 'master', u.bridge, 'up'])
  await setOnlyAddress(plan.wanNs, WAN_UPLINK, u.address)
  await ip(plan.wanNs, ['link', 'set', WAN_UPLINK, 'up'])
  await ip(plan.wanNs, ['route', 'replace', 'default', 'via', u.gateway, 'dev', WAN_UPLINK])
  await nsRun(plan.wanNs, ['nft', '-f', '-'], { input: uplinkNftRules() })
  await writeIfChanged(join(driverDir(ctx), 'uplink.json'), JSON.stringify(u, null, 2) + '\n')
}

export async function ensureNetworkLocked (ctx: DriverContext, opts?: OperationOptions): Promise<void> {
  const plan = planNetwork(ctx.prefix, localSites(ctx.sites, ctx.hosts), ctx.wan)
  await mkdir(driverDir(ctx), { recursive: true })
  throwIfAborted(opts?.signal, 'creating the local network')
  progress(opts, 'network', 'wan', `WAN namespace ${plan.wanNs}`)
  await ensureNs(plan.wanNs)
  await sysctl(plan.wanNs, 'net.ipv4.ip_forward', '1')
  await sysctl(plan.wanNs, 'net.ipv4.conf.all.rp_filter', '0')
  await sysctl(plan.wanNs, 'net.ipv4.conf.default.rp_filter', '0')
  for (const sp of plan.sites) {
    throwIfAborted(opts?.signal, 'creating the local network')
    progress(opts, 'network', 'site', `site ${sp.site}: ${sp.subnet} in ${sp.ns}`)
    await ensureSite(plan, sp)
  }
  await ensureDelay(ctx, plan, opts)
  const uplink = await currentUplink(ctx)
  if (uplink !== undefined) await ensureUplink(ctx, plan, uplink, opts)
}

export async function destroyNetworkLocked (ctx: DriverContext, opts?: OperationOptions): Promise<void> {
  progress(opts, 'network', 'destroy', 'stopping the WAN delay relay')
  await stopRelay(ctx)
  // Host namespaces too: a host whose creation was interrupted before the state recorded it
  // (its record unknown, so `down` could not remove it as a host) still goes with the network.
  const ours = (await listNamespaces()).filter(n => n.startsWith(`${ctx.prefix}-s-`) || n.startsWith(`${ctx.prefix}-h-`) || n === `${ctx.prefix}-wan`)
  for (const ns of ours) {
    progress(opts, 'network', 'destroy', `deleting namespace ${ns}`)
    await destroyNs(ns)
  }
  // The uplink's veth went with the WAN namespace.
  await rm(join(driverDir(ctx), 'uplink.json'), { force: true })
}
