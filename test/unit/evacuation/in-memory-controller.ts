/**
 * An in-memory EvacuationController for unit tests of evacuateHost (blanket-manager/evacuation/):
 * state rows from the spec, a migrate that moves the row and reports a transfer taking
 * `secondsPerMiB` of a test clock, and an addHost that records a ready host (when given one).
 */
import type { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import type { EvacuationController } from '../../../blanket-manager/evacuation/evacuate.ts'
import type { HostRow, VmRow } from '../../../blanket-manager/state/store.ts'
import type { MigrateOptions, MigrateResult } from '../../../blanket-manager/controller/types.ts'
import type { AddHost } from '../../../blanket-manager/evacuation/replace-host.ts'

export const M = 1024 * 1024

/** The in-memory controller: rows from the spec, migrations that take `secondsPerMiB` each MiB. */
export function controller (spec: ReturnType<typeof parseSpec>, clock: { now: number }, secondsPerMiB: number, onMoved?: (vm: string) => void, addHost?: AddHost): EvacuationController & { moves: string[], hosts: HostRow[] } {
  const hosts: HostRow[] = Object.values(spec.hosts).map(h => ({ name: h.name, site: h.site, driver: 'local', specHash: '', status: 'ready', bootstrapped: true }))
  const vms: VmRow[] = Object.values(spec.vms).map(v => ({ name: v.name, host: v.host ?? '', specHash: '', status: 'ready', record: { memory: v.memory } as unknown as VmRow['record'] }))
  const moves: string[] = []
  return {
    moves,
    hosts,
    ...(addHost !== undefined ? { addHost: async (s, h, o) => { await addHost(s, h, o); hosts.push({ name: h.name, site: h.site, driver: h.driver, specHash: '', status: 'ready', bootstrapped: true }) } } : {}),
    store: { vms: () => vms.map(v => ({ ...v })), hosts: () => hosts },
    wires: s => s.network.wires,
    migrate: async (s, vm, to, opts: MigrateOptions): Promise<MigrateResult> => {
      if (s.hosts[to] === undefined) throw new Error(`${to} is not a host of the spec migrate was given`)
      const row = vms.find(v => v.name === vm)
      if (row === undefined) throw new Error(`no ${vm}`)
      const bytes = row.record?.memory.allocatedBytes ?? 0
      const ms = (bytes / M) * secondsPerMiB * 1000
      // As a real migration does, it gives up at its deadline (the VM stays on the source).
      if (opts.deadlineMs !== undefined && ms > opts.deadlineMs) { clock.now += opts.deadlineMs; throw new Error(`not done within ${opts.deadlineMs} ms`) }
      clock.now += ms
      moves.push(`${vm}->${to} ${opts.mode ?? ''}${opts.deadlineMs === undefined ? ' no-deadline' : ''}`)
      onMoved?.(vm)
      const from = row.host
      row.host = to
      return { from, to, mode: 'auto', postcopy: false, totalMs: ms, downtimeMs: 20, sentBytes: bytes, iterations: 2, diskSentBytes: 0, diskSizeBytes: 0, diskReused: false }
    }
  }
}

