/**
 * The `local` cloud driver: hosts are network namespaces on this machine, each with its
 * own sshd, on per-site bridges joined by an emulated WAN (tbf bandwidth, user-space delay).
 * Topology, address plan and file layout: docs/drivers.md.
 */
import { mkdir, readFile, rm, writeFile, copyFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CloudDriver, DriverContext, HostHealth, HostRecord, SshEndpoint } from '../cloud.ts'
import type { HostSpec } from '../../core/spec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { LocalDriverError, throwIfAborted } from '../../core/errors.ts'
import { DELAY_TUN, HOST_BRIDGE, HOST_UPLINK, SITE_BRIDGE, SITE_UPLINK, hostNs, siteSideLink, checkPrefix } from './names.ts'
import { allocateHostAddress, delayRouting, localSites, planNetwork, sitePlan, tbfArgs, DELAY_RULE_PREF, type NetworkPlan, type SitePlan } from './plan.ts'
import { UPLINK_ENV, WAN_UPLINK, localNetworkName, parseUplink, uplinkNftRules, uplinkPeerLink, type UplinkSpec } from './uplink.ts'
import { sshdConfig } from './sshd-config.ts'
import { addVeth, destroyNs, ensureNs, ip, linkExists, listNamespaces, nsExists, nsPids, pidInNs, sysctl } from './netns.ts'
import { isAlive, killPids, nsRun, processCmdline, readPidFile, run, sleep, sshBanner, startDaemon } from './sh.ts'
import { XEN_HOST_GUEST_BRIDGE, XEN_HOST_STATE_DIR, ensureXenHost, stopXenHost, xenHostPid } from './xen-flavour.ts'

export { ensureSupercloudKey } from './keys.ts'
export { listLeftovers, isClean, type Leftovers } from './leftovers.ts'

/** UDP ports (loopback of the WAN namespace) between the relay and socat. */
const RELAY_PORT = 40001
const SOCAT_PORT = 40002
const SSHD_READY_TIMEOUT_MS = 15000

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

interface RelayState { relayPid: number, socatPid: number, delayMs: number }

function driverDir (ctx: DriverContext): string {
  return join(ctx.dir, 'local')
}

function hostDirOf (ctx: DriverContext, host: string): string {
  return join(ctx.dir, 'hosts', host)
}

function progress (opts: OperationOptions | undefined, subject: string, phase: string, message: string): void {
  opts?.onProgress?.({ subject, phase, message })
}

/** Serialises read-modify-write of one file within this process. */
const fileLocks = new Map<string, Promise<unknown>>()
async function withFileLock<T> (path: string, fn: () => Promise<T>): Promise<T> {
  const prev = fileLocks.get(path) ?? Promise.resolve()
  const next = prev.then(fn, fn)
  fileLocks.set(path, next.catch(() => undefined))
  return await next
}

async function readJson<T> (path: string, fallback: T): Promise<T> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T
  } catch {
    return fallback
  }
}

async function writeIfChanged (path: string, text: string, mode = 0o644): Promise<boolean> {
  const old = await readFile(path, 'utf8').catch(() => undefined)
  if (old === text) return false
  await writeFile(path, text, { mode })
  return true
}

type Assignments = Record<string, Record<string, string>>

async function hostAddress (ctx: DriverContext, sp: SitePlan, spec: HostSpec): Promise<string> {
  const file = join(driverDir(ctx), 'addresses.json')
  return await withFileLock(file, async () => {
    const all = await readJson<Assignments>(file, {})
    const assigned = all[sp.site] ?? {}
    const siteHosts = Object.values(ctx.hosts ?? {})
      .filter(h => h.site === spec.site && h.driver === 'local')
      .map(h => h.local?.address !== undefined ? { name: h.name, explicit: h.local.address } : { name: h.name })
    const req = { subnet: sp.subnet, gateway: sp.gateway, host: spec.name, siteHosts, assigned }
    const address = allocateHostAddress(spec.local?.address !== undefined ? { ...req, explicit: spec.local.address } : req)
    if (assigned[spec.name] !== address) {
      all[sp.site] = { ...assigned, [spec.name]: address }
      await mkdir(driverDir(ctx), { recursive: true })
      await writeFile(file, JSON.stringify(all, null, 2) + '\n')
    }
    return address
  })
}

async function forgetHostAddress (ctx: DriverContext, site: string, host: string): Promise<void> {
  const file = join(driverDir(ctx), 'addresses.json')
  await withFileLock(file, async () => {
    const all = await readJson<Assignments>(file, {})
    if (all[site]?.[host] === undefined) return
    delete all[site][host]
    await writeFile(file, JSON.stringify(all, null, 2) + '\n')
  })
}

async function ensureBridge (ns: string, name: string): Promise<void> {
  if (!await linkExists(ns, name)) await ip(ns, ['link', 'add', name, 'type', 'bridge'])
  await ip(ns, ['link', 'set', name, 'up'])
}

/** Makes `cidr` the only IPv4 address on `dev`. */
async function setOnlyAddress (ns: string, dev: string, cidr: string): Promise<void> {
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

function relayProgram (): { argv: string[] } {
  const relay = fileURLToPath(new URL('./delay-relay.ts', import.meta.url))
  return { argv: [process.execPath, '--import', import.meta.resolve('tsx'), relay] }
}

async function udpListening (ns: string, port: number): Promise<boolean> {
  const r = await nsRun(ns, ['ss', '-H', '-l', '-u', '-n', `sport = :${port}`], { allowFailure: true })
  return r.stdout.trim() !== ''
}

async function waitFor (what: string, cond: () => Promise<boolean>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await cond()) {
    throwIfAborted(signal, what)
    if (Date.now() > deadline) throw new LocalDriverError(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

async function stopRelay (ctx: DriverContext): Promise<void> {
  const file = join(driverDir(ctx), 'relay.json')
  const st = await readJson<RelayState | undefined>(file, undefined)
  if (st !== undefined) await killPids([st.socatPid, st.relayPid])
  await rm(file, { force: true })
}

async function ensureDelay (ctx: DriverContext, plan: NetworkPlan, opts?: OperationOptions): Promise<void> {
  const wan = plan.wanNs
  const rulesOut = (await run(['ip', '-n', wan, 'rule', 'show'])).stdout
  const hasRule = (pref: number): boolean => rulesOut.split('\n').some(l => l.startsWith(`${pref}:`))
  if (plan.delayMs <= 0) {
    await stopRelay(ctx)
    for (let i = 0; i < 64; i++) if (hasRule(DELAY_RULE_PREF + i)) await ip(wan, ['rule', 'del', 'pref', String(DELAY_RULE_PREF + i)])
    if (await linkExists(wan, DELAY_TUN)) await ip(wan, ['link', 'del', DELAY_TUN])
    return
  }
  if (!await linkExists(wan, DELAY_TUN)) await ip(wan, ['tuntap', 'add', 'dev', DELAY_TUN, 'mode', 'tun'])
  await ip(wan, ['link', 'set', DELAY_TUN, 'up'])
  await sysctl(wan, `net.ipv4.conf.${DELAY_TUN}.rp_filter`, '0')
  const routing = delayRouting(plan)
  await ip(wan, routing.route)
  for (const rule of routing.rules) {
    const pref = Number(rule[3])
    if (!hasRule(pref)) await ip(wan, rule)
  }
  const file = join(driverDir(ctx), 'relay.json')
  const st = await readJson<RelayState | undefined>(file, undefined)
  if (st !== undefined && st.delayMs === plan.delayMs && await pidInNs(st.relayPid, wan) && await pidInNs(st.socatPid, wan)) return
  progress(opts, 'network', 'wan', `starting WAN delay relay (${plan.delayMs} ms one way)`)
  await stopRelay(ctx)
  // Anything else left on the relay ports (from a lost state file) goes too.
  for (const pid of await nsPids(wan)) {
    const cmd = await processCmdline(pid)
    if (cmd !== undefined && (cmd.includes('delay-relay') || cmd.includes(`${ctx.prefix}-dly`))) await killPids([pid])
  }
  const log = join(driverDir(ctx), 'relay.log')
  const relayPid = startDaemon(['ip', 'netns', 'exec', wan, ...relayProgram().argv,
    '--listen', String(RELAY_PORT), '--delay', String(plan.delayMs), '--tag', ctx.prefix], log)
  await waitFor('the WAN delay relay', async () => {
    if (!isAlive(relayPid)) throw new LocalDriverError(`the WAN delay relay exited; see ${log}`)
    return await udpListening(wan, RELAY_PORT)
  }, 20000, opts?.signal)
  const socatPid = startDaemon(['ip', 'netns', 'exec', wan, 'socat', '-lp', `${ctx.prefix}-dly`,
    `TUN,tun-name=${DELAY_TUN},tun-type=tun,iff-no-pi,up`,
    `UDP-DATAGRAM:127.0.0.1:${RELAY_PORT},bind=127.0.0.1:${SOCAT_PORT}`], log)
  await writeFile(file, JSON.stringify({ relayPid, socatPid, delayMs: plan.delayMs } satisfies RelayState) + '\n')
  await waitFor('the WAN delay TUN bridge (socat)', async () => {
    if (!isAlive(socatPid)) throw new LocalDriverError(`socat for the WAN delay TUN exited; see ${log}`)
    return await udpListening(wan, SOCAT_PORT)
  }, 10000, opts?.signal)
}


/** Pids of the sshd listener(s) of a host (its per-connection children excluded). */
export async function hostSshdPids (record: HostRecord): Promise<number[]> {
  const d = record.driverData as unknown as LocalHostData
  const out: number[] = []
  if (d.xen !== undefined) return out
  for (const pid of await nsPids(d.ns)) {
    const cmd = await processCmdline(pid)
    if (cmd !== undefined && cmd.includes(d.sshdConfig) && !/\s-R(\s|$)/.test(cmd)) out.push(pid)
  }
  return out
}

async function ensureSshd (ctx: DriverContext, spec: HostSpec, ns: string, address: string, sshdDir: string, opts?: OperationOptions): Promise<{ knownHosts: string, config: string, pidFile: string }> {
  await mkdir(sshdDir, { recursive: true, mode: 0o700 })
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
  const hostKey = join(sshdDir, 'ssh_host_ed25519_key')
  if (!await stat(hostKey).then(() => true, () => false) || !await stat(`${hostKey}.pub`).then(() => true, () => false)) {
    await rm(hostKey, { force: true })
    await rm(`${hostKey}.pub`, { force: true })
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `${spec.name}@supercloud`, '-f', hostKey])
  }
  const authorized = join(sshdDir, 'authorized_keys')
  await copyFile(`${ctx.keyPath}.pub`, authorized)
  const pub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/)
  const knownHosts = join(sshdDir, 'known_hosts')
  await writeIfChanged(knownHosts, `${address} ${pub[0] ?? ''} ${pub[1] ?? ''}\n`)
  // The config file name carries the namespace name (and so the prefix) into sshd's command line.
  const config = join(sshdDir, `sshd-${ns}.conf`)
  const pidFile = join(sshdDir, 'sshd.pid')
  const log = join(sshdDir, 'sshd.log')
  const changed = await writeIfChanged(config, sshdConfig({ address, hostKeyPath: hostKey, pidFile, authorizedKeysFile: authorized }))
  const pid = await readPidFile(pidFile)
  if (!changed && pid !== undefined && await pidInNs(pid, ns)) return { knownHosts, config, pidFile }
  // Stale or reconfigured: stop every sshd of this host, then start one.
  const stale: number[] = []
  for (const p of await nsPids(ns)) if ((await processCmdline(p))?.includes(config) === true) stale.push(p)
  if (pid !== undefined && isAlive(pid) && await pidInNs(pid, ns)) stale.push(pid)
  await killPids(stale)
  await rm(pidFile, { force: true })
  progress(opts, `host ${spec.name}`, 'sshd', `starting sshd on ${address}:22`)
  try {
    await nsRun(ns, ['/usr/sbin/sshd', '-f', config, '-E', log])
  } catch (err) {
    const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ')
    throw new LocalDriverError(`sshd of host ${spec.name} did not start: ${tail}`, err)
  }
  return { knownHosts, config, pidFile }
}

/** The uplink asked for in the environment (remembered), else the one remembered from an earlier run. */
async function currentUplink (ctx: DriverContext): Promise<UplinkSpec | undefined> {
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

async function ensureNetworkLocked (ctx: DriverContext, opts?: OperationOptions): Promise<void> {
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

async function destroyNetworkLocked (ctx: DriverContext, opts?: OperationOptions): Promise<void> {
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

export function createLocalDriver (): CloudDriver {
  const driver: CloudDriver = {
    name: 'local',

    async ensureNetwork (ctx, opts) {
      checkPrefix(ctx.prefix)
      // One network change at a time per supercloud (createHost calls in parallel may each ensure it).
      await withFileLock(join(driverDir(ctx), 'network'), async () => { await ensureNetworkLocked(ctx, opts) })
    },

    async destroyNetwork (ctx, opts) {
      checkPrefix(ctx.prefix)
      await withFileLock(join(driverDir(ctx), 'network'), async () => { await destroyNetworkLocked(ctx, opts) })
    },

    async createHost (ctx, spec, opts) {
      const subject = `host ${spec.name}`
      const what = `creating host ${spec.name}`
      checkPrefix(ctx.prefix)
      const plan = planNetwork(ctx.prefix, localSites(ctx.sites, ctx.hosts), ctx.wan)
      const sp = sitePlan(plan, spec.site)
      if (!await nsExists(sp.ns) || !await nsExists(plan.wanNs)) await driver.ensureNetwork(ctx, opts)
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
      const deadline = Date.now() + SSHD_READY_TIMEOUT_MS
      while (!await sshBanner(proxyCommand, 3000)) {
        throwIfAborted(opts?.signal, what)
        if (Date.now() > deadline) {
          const log = (await readFile(join(sshdDir, 'sshd.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ')
          throw new LocalDriverError(`sshd of host ${spec.name} does not answer on ${address}:22 after ${SSHD_READY_TIMEOUT_MS} ms: ${log}`)
        }
        await sleep(100)
      }
      const data: LocalHostData = { ns, siteNs: sp.ns, siteLink, hostDir, sshdDir, sshdConfig: sshd.config, sshdPidFile: sshd.pidFile }
      return await hostRecord(ctx, spec, address, { host: address, port: 22, username: 'root', privateKeyPath: ctx.keyPath, hostKeyPath: sshd.knownHosts, proxyCommand }, hostDir, HOST_BRIDGE, data)
    },

    async describeHost (ctx, record): Promise<HostHealth> {
      const d = record.driverData as unknown as Partial<LocalHostData>
      const ns = d.ns ?? hostNs(ctx.prefix, record.name)
      if (!await nsExists(ns)) return 'gone'
      if (d.xen !== undefined) return await xenHostPid(ns, d.hostDir ?? hostDirOf(ctx, record.name)) !== undefined ? 'running' : 'unreachable'
      const pid = await readPidFile(d.sshdPidFile ?? join(hostDirOf(ctx, record.name), 'sshd', 'sshd.pid'))
      return pid !== undefined && await pidInNs(pid, ns) ? 'running' : 'unreachable'
    },

    async destroyHost (ctx, record, opts) {
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
  }
  return driver
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
    guestMemoryBytes: spec.memoryBytes
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
