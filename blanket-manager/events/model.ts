/**
 * LiveModel: the current picture built by folding events in seq order: each VM's latest
 * memory figures and recent paging-rate samples, Overdriver's overload state and thresholds,
 * migrations with their progress, VirtualWire connectors, agents up or down, and counts per
 * event type. `supercloud serve` keeps one for /metrics; the dashboard keeps one in the
 * browser. Pure (no I/O, no timers); runs in Node and in the browser.
 */
import type { EventData, EventType, SupercloudEvent } from './schema.ts'

/** Paging-rate samples kept per VM (the dashboard graph's window). */
export const SAMPLES_PER_VM = 240

export interface RateSample { ts: number, rate: number }

export interface OverloadState {
  since: string
  pagingRate: number
  threshold: number
  classification?: 'transient' | 'sustained'
  swap?: boolean
  migrationTarget?: string
}

export interface VmLive {
  vm: string
  host?: string
  stats?: EventData<'vm.stats'>
  statsTs?: string
  samples: RateSample[]
  overload?: OverloadState
  /** Overloads seen (ended or not), newest last; the graph shades them. */
  overloads: Array<{ from: number, to?: number }>
  threshold?: number
  state?: 'created' | 'running' | 'stopped' | 'failed' | 'deleted'
}

export type MigrationState = 'running' | 'switchover' | 'completed' | 'failed' | 'cancelled'

export interface MigrationLive {
  id: string
  vm: string
  from: string
  to: string
  state: MigrationState
  transferredBytes: number
  totalBytes: number
  phase?: string
  error?: string
  started: string
  ended?: string
}

export interface ConnectorLive {
  id: number
  wire: string
  hosts: string[]
  state: 'up' | 'destroyed'
}

export interface HostLive {
  host: string
  agent?: 'up' | 'down'
  agentReason?: string
  spotDeadline?: string
  /** When the provider recommended moving off the host. */
  rebalance?: string
  gone?: boolean
}

export class LiveModel {
  readonly vms = new Map<string, VmLive>()
  readonly hosts = new Map<string, HostLive>()
  readonly migrations = new Map<string, MigrationLive>()
  readonly connectors = new Map<number, ConnectorLive>()
  readonly counts: Partial<Record<EventType, number>> = {}
  readonly hostThresholds = new Map<string, number>()
  globalThreshold?: number
  lastSeq = 0

  private vm (name: string, host?: string): VmLive {
    let v = this.vms.get(name)
    if (v === undefined) { v = { vm: name, samples: [], overloads: [] }; this.vms.set(name, v) }
    if (host !== undefined) v.host = host
    return v
  }

  private host (name: string): HostLive {
    let h = this.hosts.get(name)
    if (h === undefined) { h = { host: name }; this.hosts.set(name, h) }
    return h
  }

  /** The overload threshold that applies to a VM (its own, its host's, or the global one). */
  thresholdFor (vm: string): number | undefined {
    const v = this.vms.get(vm)
    if (v?.overload !== undefined) return v.overload.threshold
    if (v?.threshold !== undefined) return v.threshold
    if (v?.host !== undefined && this.hostThresholds.has(v.host)) return this.hostThresholds.get(v.host)
    return this.globalThreshold
  }

  /** Folds one event in; events at or below the last applied seq are ignored (replays). */
  apply (ev: SupercloudEvent): void {
    if (ev.seq <= this.lastSeq) return
    this.lastSeq = ev.seq
    this.counts[ev.type] = (this.counts[ev.type] ?? 0) + 1
    const t = Date.parse(ev.ts)
    if (ev.host !== undefined && !ev.type.startsWith('connector.')) this.host(ev.host)
    switch (ev.type) {
      case 'host.ready': { const h = this.host(ev.host); h.gone = false; break }
      case 'host.gone': { const h = this.host(ev.host); h.gone = true; h.agent = 'down'; h.agentReason = ev.data.reason; break }
      case 'host.interruption': { const h = this.host(ev.host); h.spotDeadline = ev.data.deadline; break }
      case 'host.rebalance': { const h = this.host(ev.host); h.rebalance = ev.data.noticeTime; break }
      case 'agent.up': { const h = this.host(ev.host); h.agent = 'up'; delete h.agentReason; break }
      case 'agent.down': { const h = this.host(ev.host); h.agent = 'down'; h.agentReason = ev.data.reason; break }
      case 'vm.created': this.vm(ev.vm, ev.host).state = 'created'; break
      case 'vm.running': this.vm(ev.vm, ev.host).state = 'running'; break
      case 'vm.stopped': this.vm(ev.vm, ev.host).state = 'stopped'; break
      case 'vm.failed': this.vm(ev.vm, ev.host).state = 'failed'; break
      case 'vm.deleted': this.vms.delete(ev.vm); break
      case 'vm.stats': {
        const v = this.vm(ev.vm, ev.host)
        v.stats = ev.data
        v.statsTs = ev.ts
        if (ev.data.pagingRate !== undefined) this.sample(v, t, ev.data.pagingRate)
        break
      }
      case 'connector.created': this.connectors.set(ev.data.connector, { id: ev.data.connector, wire: ev.data.wire, hosts: ev.data.hosts ?? [], state: 'up' }); break
      case 'connector.repointed': {
        const c = this.connectors.get(ev.data.connector) ?? { id: ev.data.connector, wire: ev.data.wire ?? '', hosts: [], state: 'up' as const }
        c.hosts = [...new Set(c.hosts.map(h => (h === ev.data.from ? ev.data.to : h)).concat(c.hosts.includes(ev.data.from) ? [] : [ev.data.to]))]
        if (ev.data.wire !== undefined) c.wire = ev.data.wire
        this.connectors.set(c.id, c)
        break
      }
      case 'connector.destroyed': { const c = this.connectors.get(ev.data.connector); if (c !== undefined) c.state = 'destroyed'; break }
      case 'migration.started':
        this.migrations.set(ev.data.migration, { id: ev.data.migration, vm: ev.vm, from: ev.data.from, to: ev.data.to, state: 'running', transferredBytes: 0, totalBytes: 0, started: ev.ts })
        break
      case 'migration.progress': {
        const m = this.migration(ev.data.migration, ev.vm, ev.ts)
        m.transferredBytes = ev.data.transferredBytes
        m.totalBytes = ev.data.totalBytes
        if (ev.data.phase !== undefined) m.phase = ev.data.phase
        break
      }
      case 'migration.switchover': this.migration(ev.data.migration, ev.vm, ev.ts).state = 'switchover'; break
      case 'migration.completed': {
        const m = this.migration(ev.data.migration, ev.vm, ev.ts)
        m.state = 'completed'
        m.ended = ev.ts
        if (m.totalBytes > 0) m.transferredBytes = Math.max(m.transferredBytes, m.totalBytes)
        this.vm(ev.vm).host = m.to
        break
      }
      case 'migration.failed': { const m = this.migration(ev.data.migration, ev.vm, ev.ts); m.state = 'failed'; m.error = ev.data.error; m.ended = ev.ts; break }
      case 'migration.cancelled': { const m = this.migration(ev.data.migration, ev.vm, ev.ts); m.state = 'cancelled'; m.ended = ev.ts; break }
      case 'overload.started': {
        const v = this.vm(ev.vm, ev.host)
        v.overload = { since: ev.ts, pagingRate: ev.data.pagingRate, threshold: ev.data.threshold }
        v.threshold = ev.data.threshold
        v.overloads.push({ from: t })
        if (v.overloads.length > 50) v.overloads.shift()
        this.sample(v, t, ev.data.pagingRate)
        break
      }
      case 'overload.classified': {
        const v = this.vm(ev.vm, ev.host)
        if (v.overload !== undefined) v.overload.classification = ev.data.classification
        if (ev.data.pagingRate !== undefined) this.sample(v, t, ev.data.pagingRate)
        break
      }
      case 'overload.swap': { const v = this.vm(ev.vm, ev.host); if (v.overload !== undefined) v.overload.swap = ev.data.enabled; break }
      case 'overload.migration-decided': { const v = this.vm(ev.vm, ev.host); if (v.overload !== undefined) v.overload.migrationTarget = ev.data.target; break }
      case 'overload.ended': {
        const v = this.vm(ev.vm, ev.host)
        delete v.overload
        const last = v.overloads[v.overloads.length - 1]
        if (last !== undefined && last.to === undefined) last.to = t
        break
      }
      case 'overload.threshold':
        if (ev.vm !== undefined) this.vm(ev.vm, ev.host).threshold = ev.data.threshold
        else if (ev.host !== undefined) this.hostThresholds.set(ev.host, ev.data.threshold)
        else this.globalThreshold = ev.data.threshold
        break
      case 'host.created': break
    }
  }

  private migration (id: string, vm: string, ts: string): MigrationLive {
    let m = this.migrations.get(id)
    if (m === undefined) { m = { id, vm, from: '?', to: '?', state: 'running', transferredBytes: 0, totalBytes: 0, started: ts }; this.migrations.set(id, m) }
    return m
  }

  private sample (v: VmLive, ts: number, rate: number): void {
    v.samples.push({ ts, rate })
    if (v.samples.length > SAMPLES_PER_VM) v.samples.splice(0, v.samples.length - SAMPLES_PER_VM)
  }
}
