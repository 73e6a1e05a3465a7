/**
 * The Prometheus text exposition (format 0.0.4) of what the dashboard shows: per-VM memory
 * (requested, allocated, balloon, resident, swapped), paging rate and overload threshold when
 * known, per-host up, migrations' progress, event counters. Pure: built from the last status
 * report, the live model and the hub's counters.
 */
import type { StatusReport } from '../controller/index.ts'
import type { HubStats } from '../events/hub.ts'
import type { LiveModel } from '../events/model.ts'
import { EVENT_TYPE_NAMES } from '../events/schema.ts'

export interface MetricsInput {
  status?: StatusReport
  model: LiveModel
  hub: HubStats
  connections: { events: number, console: number }
}

type Labels = Record<string, string>

class Exposition {
  private readonly lines: string[] = []
  private readonly seen = new Set<string>()

  family (name: string, type: 'gauge' | 'counter', help: string): void {
    if (this.seen.has(name)) return
    this.seen.add(name)
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`)
  }

  sample (name: string, labels: Labels, value: number): void {
    const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')
    this.lines.push(`${name}${l === '' ? '' : `{${l}}`} ${formatValue(value)}`)
  }

  text (): string { return this.lines.join('\n') + '\n' }
}

export function escapeLabel (v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (v === Infinity) return '+Inf'
  if (v === -Infinity) return '-Inf'
  return String(v)
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export function renderMetrics (m: MetricsInput): string {
  const x = new Exposition()
  const hostSite = new Map<string, string>()
  for (const h of m.status?.hosts ?? []) hostSite.set(h.name, h.site)

  x.family('supercloud_host_up', 'gauge', 'Whether the host is running and its agent answers (1) or not (0).')
  for (const h of m.status?.hosts ?? []) {
    const agent = m.model.hosts.get(h.name)?.agent
    const up = h.health === 'running' && agent !== 'down' ? 1 : 0
    x.sample('supercloud_host_up', { host: h.name, site: h.site }, up)
  }

  const vmNames = new Set<string>([...(m.status?.vms ?? []).map(v => v.name), ...m.model.vms.keys()])
  const statusVm = new Map((m.status?.vms ?? []).map(v => [v.name, v]))
  const gauges: Array<[string, string, (vm: string) => number | undefined]> = [
    ['supercloud_vm_memory_requested_bytes', 'Memory the spec requests for the VM.', vm => statusVm.get(vm)?.memory?.requestedBytes ?? m.model.vms.get(vm)?.stats?.requestedBytes],
    ['supercloud_vm_memory_allocated_bytes', 'Memory allocated to the VM (its balloon target).', vm => statusVm.get(vm)?.memory?.allocatedBytes ?? m.model.vms.get(vm)?.stats?.allocatedBytes],
    ['supercloud_vm_balloon_bytes', 'Memory the guest has according to its balloon driver.', vm => m.model.vms.get(vm)?.stats?.balloonBytes],
    ['supercloud_vm_memory_resident_bytes', "Resident memory of the VM's QEMU process on its host.", vm => m.model.vms.get(vm)?.stats?.residentBytes],
    ['supercloud_vm_swapped_local_bytes', "Guest memory swapped to the host's local disk.", vm => m.model.vms.get(vm)?.stats?.swappedLocalBytes],
    ['supercloud_vm_swapped_remote_bytes', 'Guest memory swapped to remote memory.', vm => m.model.vms.get(vm)?.stats?.swappedRemoteBytes],
    ['supercloud_vm_paging_rate', 'Paging rate of the VM in pages per second, when known.', vm => lastRate(m.model, vm)],
    ['supercloud_vm_overload_threshold', 'Overdriver overload threshold for the VM, pages per second.', vm => m.model.thresholdFor(vm)],
    ['supercloud_vm_overloaded', 'Whether Overdriver considers the VM overloaded now.', vm => (m.model.vms.get(vm)?.overload !== undefined ? 1 : 0)]
  ]
  for (const [name, help, get] of gauges) {
    x.family(name, 'gauge', help)
    for (const vm of [...vmNames].sort()) {
      const v = get(vm)
      if (v === undefined) continue
      const host = statusVm.get(vm)?.host ?? m.model.vms.get(vm)?.host ?? ''
      x.sample(name, { vm, host }, v)
    }
  }
  x.family('supercloud_vm_running', 'gauge', 'Whether the VM runs (1) as observed on its host.')
  for (const v of m.status?.vms ?? []) x.sample('supercloud_vm_running', { vm: v.name, host: v.host }, v.state === 'running' ? 1 : 0)

  x.family('supercloud_migration_progress_ratio', 'gauge', 'Fraction of the migration transferred (1 when completed).')
  x.family('supercloud_migration_active', 'gauge', 'Whether the migration is in progress.')
  for (const mig of m.model.migrations.values()) {
    const labels = { migration: mig.id, vm: mig.vm, from: mig.from, to: mig.to }
    const ratio = mig.state === 'completed' ? 1 : mig.totalBytes > 0 ? Math.min(1, mig.transferredBytes / mig.totalBytes) : 0
    x.sample('supercloud_migration_progress_ratio', labels, ratio)
    x.sample('supercloud_migration_active', labels, mig.state === 'running' || mig.state === 'switchover' ? 1 : 0)
  }

  x.family('supercloud_events_published_total', 'counter', 'Events published by this server since it started, by type.')
  for (const t of EVENT_TYPE_NAMES) {
    const n = m.hub.published[t]
    if (n !== undefined) x.sample('supercloud_events_published_total', { type: t }, n)
  }
  x.family('supercloud_events_seen_total', 'counter', 'Events this server saw (its own and other processes\'), by type.')
  for (const t of EVENT_TYPE_NAMES) {
    const n = m.model.counts[t]
    if (n !== undefined) x.sample('supercloud_events_seen_total', { type: t }, n)
  }
  x.family('supercloud_events_rejected_total', 'counter', 'Events from agents or publishers rejected as malformed.')
  x.sample('supercloud_events_rejected_total', {}, m.hub.rejected)
  x.family('supercloud_events_slow_disconnects_total', 'counter', 'Event subscribers disconnected for falling behind.')
  x.sample('supercloud_events_slow_disconnects_total', {}, m.hub.slowDisconnects)
  x.family('supercloud_events_head_seq', 'gauge', 'Sequence number of the newest stored event.')
  x.sample('supercloud_events_head_seq', {}, m.hub.head)
  x.family('supercloud_event_subscribers', 'gauge', 'Live event subscriptions.')
  x.sample('supercloud_event_subscribers', {}, m.hub.subscribers)
  x.family('supercloud_websocket_connections', 'gauge', 'Open WebSocket connections, by endpoint.')
  x.sample('supercloud_websocket_connections', { endpoint: 'events' }, m.connections.events)
  x.sample('supercloud_websocket_connections', { endpoint: 'console' }, m.connections.console)
  return x.text()
}

function lastRate (model: LiveModel, vm: string): number | undefined {
  const v = model.vms.get(vm)
  if (v?.stats?.pagingRate !== undefined) return v.stats.pagingRate
  const s = v?.samples[v.samples.length - 1]
  return s?.rate
}
