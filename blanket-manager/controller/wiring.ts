/**
 * VirtualWire from the controller: the wires in force (spec plus `wire connect/disconnect`),
 * their topology, each host's endpoints read and written through its endpoint interface over
 * SSH, the agents' switches and TAP attachments, and extenders (OpenVPN between sites).
 */
import type { ClientChannel } from 'ssh2'
import type { HostRecord } from '../../drivers/cloud.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { Spec } from '../../core/spec.ts'
import { shq } from '../../core/ssh.ts'
import { mapLimited } from '../../core/concurrency.ts'
import { applyExtenderRoutes, connectExtender, sshShell, type ExtenderHostSide } from '../../virtualwire/extender/manage.ts'
import { extenderDevName, extenderRoutes, extenderTunnel, DEFAULT_EXTENDER_PORT, type ExtenderTunnelPlan } from '../../virtualwire/extender/openvpn.ts'
import { assignConnectorIds, compileTopology, diffEndpoints, type EndpointWrite, type Topology } from '../../virtualwire/topology/compile.ts'
import { wireKey } from '../../virtualwire/topology/wires.ts'
import type { EndpointConfig, WireSpec } from '../../virtualwire/types.ts'
import { endpointRoot, VW_MTU } from '../bootstrap/endpoint-manager.ts'
import { resolveVms, type ResolvedVm } from '../planner/placement.ts'
import { EndpointRefusedError, readEndpoints, writeEndpoint } from '../wiring/endpoint-files.ts'
import type { ControllerCore } from './components.ts'
import { HostFirewalls } from './firewall.ts'
import type { HostAgent } from './sessions.ts'

/** Endpoint writes held open ahead of a switch (see Wiring.arm). */
export interface ArmedWrites {
  fire: () => Promise<void>
  disarm: () => Promise<void>
}

export class Wiring<A extends HostAgent> {
  /** The hosts' firewalls, which admit VirtualWire peers ahead of the endpoint writes made here. */
  readonly firewalls: HostFirewalls<A>
  constructor (private readonly c: ControllerCore<A>) {
    this.firewalls = new HostFirewalls(c)
  }

  /** Wires in force: the spec's, plus `wire connect`, minus `wire disconnect`. */
  wires (spec: Spec): WireSpec[] {
    const ch = this.c.state.wireChanges()
    const removed = new Set(ch.removed)
    const out = spec.network.wires.filter(w => !removed.has(wireKey(w)))
    for (const w of ch.added) if (!out.some(x => wireKey(x) === wireKey(w))) out.push(w)
    return out
  }

  /** Records a runtime wiring change (`wire connect` / `wire disconnect`). */
  setWireChange (w: WireSpec, connect: boolean): void {
    const ch = this.c.state.wireChanges()
    const k = wireKey(w)
    ch.added = ch.added.filter(x => wireKey(x) !== k)
    ch.removed = ch.removed.filter(x => x !== k)
    if (connect) ch.added.push(w)
    else ch.removed.push(k)
    this.c.state.setWireChanges(ch)
  }

  /** The topology of the wires in force, with VMs where `resolved` places them. */
  topology (spec: Spec, resolved: Record<string, ResolvedVm>, prefix: string, wires: WireSpec[] = this.wires(spec)): Topology {
    const ids = assignConnectorIds(wires, this.c.state.connectorIds())
    this.c.state.setConnectorIds(ids)
    const hostAddress: Record<string, string> = {}
    for (const h of this.c.store.hosts()) if (h.record !== undefined) hostAddress[h.name] = h.record.address
    return compileTopology({
      spec: { ...spec, network: { ...spec.network, wires } },
      placement: Object.fromEntries(Object.values(resolved).map(r => [r.spec.name, r.host])),
      hostAddress,
      ids,
      prefix
    })
  }

  /** Whether any host's endpoints differ from what the wires want (an endpoint manager lost them, a host came back empty). */
  async drifted (spec: Spec, prefix: string, wires: WireSpec[]): Promise<boolean> {
    try {
      const topo = this.topology(spec, resolveVms(spec, prefix), prefix, wires)
      return diffEndpoints(await this.currentEndpoints(), topo.endpoints).length > 0
    } catch {
      return true
    }
  }

  /** Each ready host's endpoints, read through its endpoint interface. */
  async currentEndpoints (): Promise<Record<string, EndpointConfig[]>> {
    const out: Record<string, EndpointConfig[]> = {}
    await mapLimited(this.c.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined), this.c.hostConcurrency, async h => {
      const ssh = await this.c.sessions.connect(h.name)
      out[h.name] = await readEndpoints(ssh, endpointRoot(h.record?.stateDir ?? ''))
    })
    return out
  }

  /** Executes endpoint-interface writes over SSH, in order. */
  async applyEndpointWrites (writes: EndpointWrite[], progress: (ev: ProgressEvent) => void = this.c.progress): Promise<void> {
    await this.firewalls.admit(writes)
    for (const w of writes) {
      const record = this.c.record(w.host)
      progress({ subject: `host ${w.host}`, phase: 'virtualwire', message: `echo "${w.line}" > ${w.file}` })
      await writeEndpoint(await this.c.sessions.connect(w.host), endpointRoot(record.stateDir), w)
    }
  }

  /**
   * Endpoint writes made ready ahead of a migration's switch: on each write's host a `cat` holds
   * the endpoint file open (`cat > <root>/<file>`, one SSH channel each), so `fire` only sends
   * the line (the endpoint interface applies a complete line during the write call) instead of
   * opening a channel and starting a shell at the switch. `disarm` closes them unwritten.
   * Resolves to undefined when a host cannot be armed (the caller then writes the usual way).
   */
  async arm (writes: EndpointWrite[]): Promise<ArmedWrites | undefined> {
    const armed: Array<{ w: EndpointWrite, ch: ClientChannel, done: Promise<{ code: number | null, stderr: string }> }> = []
    const closeAll = async (): Promise<void> => {
      for (const a of armed) a.ch.end()
      await Promise.all(armed.map(async a => await a.done))
    }
    try {
      await this.firewalls.admit(writes)
      for (const w of writes) {
        const record = this.c.record(w.host)
        const ch = await (await this.c.sessions.connect(w.host)).channel(`exec cat > ${shq(`${endpointRoot(record.stateDir)}/${w.file}`)}`)
        armed.push({ w, ch, done: channelDone(ch) })
      }
    } catch {
      await closeAll()
      return undefined
    }
    let used = false
    return {
      fire: async () => {
        if (used) return
        used = true
        await Promise.all(armed.map(async a => {
          this.c.progress({ subject: `host ${a.w.host}`, phase: 'virtualwire', message: `echo "${a.w.line}" > ${a.w.file}` })
          a.ch.end(`${a.w.line}\n`)
          const r = await a.done
          if (r.code !== 0) throw new EndpointRefusedError(a.w.host, a.w, r.stderr.trim())
        }))
      },
      disarm: async () => {
        if (used) return
        used = true
        await closeAll()
      }
    }
  }

  /**
   * The `wires.sync` action: endpoint managers running, extenders up, every host's endpoints
   * and switches matching `topo`, running guests' TAPs on their bridges (except `skip`: guests
   * this plan (re)creates get their bridges at creation).
   */
  async sync (spec: Spec, topo: Topology, prefix: string, skip: Set<string>, progress: (ev: ProgressEvent) => void): Promise<void> {
    // Endpoint managers first (one that died is restarted and reconciles from its saved state).
    await mapLimited(this.c.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined), this.c.hostConcurrency, async h => {
      await this.c.hosts.endpointManager(h.name, prefix, { onProgress: progress })
    })
    await this.syncExtenders(spec, prefix, progress)
    await this.syncWires(topo, prefix, progress)
    await this.attachNics(topo, skip)
  }

  /** Makes every host's endpoints and switches match the topology. */
  private async syncWires (topo: Topology, prefix: string, progress: (ev: ProgressEvent) => void): Promise<void> {
    const writes = diffEndpoints(await this.currentEndpoints(), topo.endpoints)
    await this.applyEndpointWrites(writes, progress)
    await mapLimited(this.c.store.hosts().filter(h => h.status === 'ready'), this.c.hostConcurrency, async h => {
      const switches = (topo.switches[h.name] ?? []).map(sw => ({ name: sw.name, bridge: sw.bridge, mtu: VW_MTU, ports: sw.ports.map(p => ({ port: p.port, endpointBridge: p.endpointBridge, link: p.link, peer: p.peer })) }))
      await (await this.c.sessions.agent(h.name)).ensureSwitches({ prefix, switches })
    })
  }

  /**
   * Extenders: an encrypted OpenVPN tunnel between the gateway hosts of every pair of sites
   * that declare one, and routes on every host of those sites so traffic between sites
   * (VirtualWire connectors among it) takes the tunnel instead of the underlay.
   */
  private async syncExtenders (spec: Spec, prefix: string, progress: (ev: ProgressEvent) => void): Promise<void> {
    const sites = Object.keys(spec.network.extenders).filter(s => spec.sites[s]?.subnet !== undefined).sort()
    if (sites.length < 2) return
    const gateways: Record<string, string> = {}
    for (const s of sites) gateways[s] = spec.network.extenders[s]?.gateway ?? ''
    const tunnels: ExtenderTunnelPlan[] = []
    let index = 0
    for (let i = 0; i < sites.length; i++) {
      for (let j = i + 1; j < sites.length; j++) {
        tunnels.push(await this.connectPair(sites[i] ?? '', sites[j] ?? '', gateways, prefix, index++, progress))
      }
    }
    const hostsBySite: Record<string, Array<{ name: string, address: string }>> = {}
    for (const h of this.c.store.hosts()) {
      if (h.record === undefined || !sites.includes(h.site)) continue
      ;(hostsBySite[h.site] ??= []).push({ name: h.name, address: h.record.address })
    }
    const plans = extenderRoutes({
      sites: Object.fromEntries(sites.map(s => [s, { subnet: spec.sites[s]?.subnet ?? '' }])),
      gateways,
      hostsBySite,
      tunnels
    })
    await mapLimited(Object.values(plans), this.c.hostConcurrency, async plan => { await applyExtenderRoutes(sshShell(await this.c.sessions.connect(plan.host)), plan) })
  }

  /** The extender between the gateways of sites `sa` and `sb` (the `index`th pair). */
  private async connectPair (sa: string, sb: string, gateways: Record<string, string>, prefix: string, index: number, progress: (ev: ProgressEvent) => void): Promise<ExtenderTunnelPlan> {
    const [ga, gb] = [this.c.record(gateways[sa] ?? ''), this.c.record(gateways[sb] ?? '')]
    const name = `${prefix}-ext${index}`
    const dev = extenderDevName(prefix, index)
    const port = DEFAULT_EXTENDER_PORT + index
    // Each end listens on its own address and sends to where the other is reachable from it (a public address across networks).
    const [toB, toA] = [peerAddress(ga, gb), peerAddress(gb, ga)]
    const at = (h: HostRecord, to: string): string => to !== h.address ? ` at ${to}` : ''
    progress({ subject: 'virtualwire', phase: 'extender', message: `${sa} (${ga.name}${at(ga, toA)}) <-> ${sb} (${gb.name}${at(gb, toB)}) over OpenVPN` })
    const a: ExtenderHostSide = { shell: sshShell(await this.c.sessions.connect(ga.name)), ip: ga.address, port, dev, runDir: `${ga.stateDir}/extender`, ...(toA !== ga.address ? { reachedAt: toA } : {}) }
    const b: ExtenderHostSide = { shell: sshShell(await this.c.sessions.connect(gb.name)), ip: gb.address, port, dev, runDir: `${gb.stateDir}/extender`, ...(toB !== gb.address ? { reachedAt: toB } : {}) }
    await connectExtender({ name, index, a, b })
    const t = extenderTunnel(index)
    return { name, a: { site: sa, dev, tunnelIp: t.a, endpoint: toA }, b: { site: sb, dev, tunnelIp: t.b, endpoint: toB } }
  }

  /** Puts running guests' TAPs on the bridge their NIC belongs on (after a wiring change). */
  private async attachNics (topo: Topology, skip: Set<string>): Promise<void> {
    const byHost = new Map<string, Array<{ tap: string, bridge: string, mtu?: number }>>()
    for (const vm of this.c.store.vms().filter(v => v.status === 'ready' && v.record !== undefined && !skip.has(v.name))) {
      const host = this.c.store.host(vm.host)?.record
      if (host === undefined) continue
      for (const n of vm.record?.nics ?? []) {
        const wired = topo.nics[vm.name]?.[n.name]
        const list = byHost.get(vm.host) ?? []
        list.push(wired !== undefined ? { tap: n.tap, bridge: wired.bridge, mtu: VW_MTU } : { tap: n.tap, bridge: host.guestBridge })
        byHost.set(vm.host, list)
      }
    }
    await mapLimited([...byHost], this.c.hostConcurrency, async ([host, taps]) => { await (await this.c.sessions.agent(host)).attach({ taps }) })
  }
}

/** Resolves once an exec channel closed, with its exit code and stderr. */
function channelDone (ch: ClientChannel): Promise<{ code: number | null, stderr: string }> {
  return new Promise(resolve => {
    let code: number | null = null
    let stderr = ''
    ch.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    ch.on('data', () => {})
    ch.on('exit', (c: number | null) => { code = c })
    ch.on('close', () => { resolve({ code, stderr }) })
  })
}

/**
 * Where `self`'s extender end sends to reach `peer`: the peer's public address when the two
 * are in different networks (HostRecord.reach: an EC2 instance seen from a local site, and
 * the local site's NAT address seen from the instance), else its site address.
 */
export function peerAddress (self: HostRecord, peer: HostRecord): string {
  return peer.reach !== undefined && peer.reach.network !== self.reach?.network ? peer.reach.publicAddress : peer.address
}
