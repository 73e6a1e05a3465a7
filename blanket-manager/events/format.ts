/**
 * Human-readable lines for events (the `supercloud events` output and the dashboard's
 * timeline). Pure; runs in Node and in the browser.
 */
import type { SupercloudEvent } from './schema.ts'

export function formatBytes (n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; u++ }
  return `${u === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1)} ${units[u] ?? 'B'}`
}

function pct (done: number, total: number): string {
  return total > 0 ? `${Math.min(100, Math.round(done / total * 100))}%` : '?%'
}

/** What happened, in a few words (without seq, time, host and VM). */
export function describeEvent (ev: SupercloudEvent): string {
  switch (ev.type) {
    case 'host.created': return `host created at site ${ev.data.site} (driver ${ev.data.driver})`
    case 'host.ready': return `host ready${ev.data.accel !== undefined ? `, hypervisor ${ev.data.accel}` : ''}`
    case 'host.gone': return `host gone: ${ev.data.reason}`
    case 'host.interruption': return `interruption notice: ${ev.data.action} at ${ev.data.deadline}${ev.data.noticeSeconds !== undefined ? ` (${ev.data.noticeSeconds} s notice)` : ''}`
    case 'host.rebalance': return `rebalance recommendation (${ev.data.noticeTime}): move off this host`
    case 'agent.up': return `agent up${ev.data.build !== undefined ? ` (build ${ev.data.build})` : ''}`
    case 'agent.down': return `agent down: ${ev.data.reason}`
    case 'vm.created': return `VM created: ${formatBytes(ev.data.requestedBytes)} requested, ${formatBytes(ev.data.allocatedBytes)} allocated, ${ev.data.cpus} vCPU`
    case 'vm.running': return `VM running${ev.data.accel !== undefined ? ` (${ev.data.accel})` : ''}`
    case 'vm.stopped': return `VM stopped${ev.data.reason !== undefined ? `: ${ev.data.reason}` : ''}`
    case 'vm.failed': return `VM failed: ${ev.data.error}`
    case 'vm.deleted': return `VM deleted${ev.data.reason !== undefined ? `: ${ev.data.reason}` : ''}`
    case 'vm.stats': return `resident ${formatBytes(ev.data.residentBytes)}, balloon ${formatBytes(ev.data.balloonBytes)}${ev.data.pagingRate !== undefined ? `, paging ${Math.round(ev.data.pagingRate)} pages/s` : ''}`
    case 'connector.created': return `connector ${ev.data.connector} created: ${ev.data.wire}`
    case 'connector.repointed': return `connector ${ev.data.connector} repointed ${ev.data.from} → ${ev.data.to}`
    case 'connector.destroyed': return `connector ${ev.data.connector} destroyed`
    case 'migration.started': return `migration ${ev.data.migration} started: ${ev.data.from} → ${ev.data.to}${ev.data.reason !== undefined ? ` (${ev.data.reason})` : ''}`
    case 'migration.progress': return `migration ${ev.data.migration}: ${pct(ev.data.transferredBytes, ev.data.totalBytes)} (${formatBytes(ev.data.transferredBytes)} of ${formatBytes(ev.data.totalBytes)})${ev.data.phase !== undefined ? `, ${ev.data.phase}` : ''}`
    case 'migration.switchover': return `migration ${ev.data.migration}: switchover${ev.data.downtimeMs !== undefined ? ` (${ev.data.downtimeMs} ms downtime)` : ''}`
    case 'migration.completed': return `migration ${ev.data.migration} completed in ${(ev.data.durationMs / 1000).toFixed(1)} s`
    case 'migration.failed': return `migration ${ev.data.migration} failed: ${ev.data.error}`
    case 'migration.cancelled': return `migration ${ev.data.migration} cancelled${ev.data.reason !== undefined ? `: ${ev.data.reason}` : ''}`
    case 'operation.started': return `operation ${ev.data.operation} (${ev.data.kind}${ev.data.subject !== undefined ? ` ${ev.data.subject}` : ''}) started by ${ev.data.by}`
    case 'operation.progress': return `operation ${ev.data.operation}: ${ev.data.subject}: ${ev.data.phase}: ${ev.data.message}`
    case 'operation.completed': return `operation ${ev.data.operation} (${ev.data.kind}) completed in ${(ev.data.durationMs / 1000).toFixed(1)} s`
    case 'operation.failed': return `operation ${ev.data.operation} (${ev.data.kind}) failed: ${ev.data.error}`
    case 'operation.cancelled': return `operation ${ev.data.operation} (${ev.data.kind}) cancelled${ev.data.by !== undefined ? ` by ${ev.data.by}` : ''}`
    case 'overload.started': return `overload started: paging ${Math.round(ev.data.pagingRate)} pages/s > threshold ${Math.round(ev.data.threshold)}`
    case 'overload.classified': return `overload classified ${ev.data.classification}`
    case 'overload.swap': return `cooperative swap ${ev.data.enabled ? 'on' : 'off'}${ev.data.reason !== undefined ? `: ${ev.data.reason}` : ''}`
    case 'overload.threshold': return `overload threshold ${ev.data.previous !== undefined ? `${Math.round(ev.data.previous)} → ` : ''}${Math.round(ev.data.threshold)} pages/s`
    case 'overload.migration-decided': return `Overdriver decided to migrate to ${ev.data.target}: ${ev.data.reason}`
    case 'overload.ended': return `overload ended after ${(ev.data.durationMs / 1000).toFixed(1)} s`
  }
}

/** One terminal line: `SEQ  TIME  TYPE  HOST/VM  what`. */
export function formatEventLine (ev: SupercloudEvent): string {
  const where = [ev.host, ev.vm].filter(x => x !== undefined).join('/')
  return `${String(ev.seq).padStart(6)}  ${ev.ts}  ${ev.type.padEnd(26)} ${(where === '' ? '-' : where).padEnd(20)} ${describeEvent(ev)}`
}
