/**
 * bench/evacuate.ts — evacuating a host within a notice (issue 17): N VMs (256 and 128 MiB,
 * listed biggest first, one of them writing its memory when --writing) on host `spot`; it is
 * given a notice of --notice seconds and emptied by `supercloud evacuate spot --deadline Ns
 * --json` (the plan: targets by free memory, shortest move first, modes from the deadline; the
 * same evacuateHost `serve` runs on an interruption notice). Baseline in the same run: the VMs
 * are brought back, then the same moves (same VM, same target) done one by one by `supercloud
 * migrate` in spec order (biggest first), without planning, against the same notice.
 * Reports per VM its move time and QEMU downtime, when it arrived (s after the notice), how many
 * arrived before the deadline, and the last arrival as a ratio of the notice. One JSON object.
 * Usage: node --import tsx bench/evacuate.ts [--vms 4] [--notice 120] [--writing]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import type { EvacuationResult } from '../blanket-manager/evacuation/evacuate.ts'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { bringUp, migrateVm, migrationLabSpec, startMemload } from './lib/migrate-lab.ts'
import { r3 } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '4' },
    notice: { type: 'string', default: '120' },
    writing: { type: 'boolean', default: false }
  }
})
const N = Math.max(1, Math.min(6, Number(values.vms)))
const NOTICE_S = Number(values.notice)
const WRITE_MIBPS = 16

/** Biggest first, as a spec is usually written: half 256 MiB, half 128 MiB. */
const VMS = Array.from({ length: N }, (_, i) => ({ name: `v${i + 1}`, memory: i < Math.ceil(N / 2) ? '256M' : '128M' }))

const spec = migrationLabSpec({
  name: 'evac',
  octet: 58,
  hosts: { a: ['spot', 'h2', 'h3'], b: [] },
  hostMemory: `${Math.max(1024, 128 + N * 256)}M`,
  vms: VMS.map((v, i) => ({ name: v.name, host: 'spot', memory: v.memory, address: `198.18.58.${101 + i}/24` }))
})

const log = benchLog('evacuate')
const t0 = Date.now()
const load0 = loadavg()
const sb = new CliSandbox(spec, 'sc-bench-evac-')

interface Arrival { vm: string, to: string, totalMs: number, downtimeMs: number, arrivedS: number, beforeDeadline: boolean }
interface Run { arrivals: Arrival[], failed: string[], inTime: number, lastArrivalS: number | null, lastOverNotice: number | null }

function summary (arrivals: Arrival[], failed: string[]): Run {
  const last = arrivals.length > 0 ? Math.max(...arrivals.map(a => a.arrivedS)) : null
  return { arrivals, failed, inTime: arrivals.filter(a => a.beforeDeadline).length, lastArrivalS: last, lastOverNotice: last !== null ? r3(last / NOTICE_S) : null }
}

async function planned (): Promise<Run> {
  const start = Date.now()
  const r = await sb.run(['evacuate', 'spot', '--deadline', `${NOTICE_S}s`, '--json'], { timeoutMs: (NOTICE_S + 300) * 1000 })
  const res = JSON.parse(r.stdout) as EvacuationResult
  const arrivals = res.moved.map(m => ({ vm: m.vm, to: m.to, totalMs: m.totalMs, downtimeMs: m.downtimeMs, arrivedS: r3((Date.parse(m.endedAt) - start) / 1000), beforeDeadline: m.beforeDeadline }))
  log(`planned: ${arrivals.map(a => `${a.vm} -> ${a.to} at ${a.arrivedS} s`).join(', ')}${r.code !== 0 ? ` (exit ${r.code})` : ''}`)
  return summary(arrivals, [...res.failed.map(f => f.vm), ...res.stranded.map(s => s.vm)])
}

async function oneByOne (moves: Array<{ vm: string, to: string }>): Promise<Run> {
  const start = Date.now()
  const deadline = start + NOTICE_S * 1000
  const arrivals: Arrival[] = []
  const failed: string[] = []
  for (const m of moves) {
    const left = Math.round((deadline - Date.now()) / 1000)
    if (left <= 0) { failed.push(m.vm); continue }
    const out = await migrateVm(sb, { vm: m.vm, to: m.to, deadline: `${left}s` })
    if (!out.ok) { failed.push(m.vm); log(`baseline: ${m.vm} failed: ${out.error}`); continue }
    const at = Date.now()
    arrivals.push({ vm: m.vm, to: m.to, totalMs: out.result.totalMs, downtimeMs: out.result.downtimeMs, arrivedS: r3((at - start) / 1000), beforeDeadline: at <= deadline })
  }
  log(`baseline: ${arrivals.map(a => `${a.vm} -> ${a.to} at ${a.arrivedS} s`).join(', ')}`)
  return summary(arrivals, failed)
}

async function main (): Promise<Record<string, unknown>> {
  await bringUp(sb, log, `3 hosts, ${N} guests on spot`)
  const writer = values.writing === true ? VMS[0]?.name : undefined
  if (writer !== undefined) log(`${writer} writes: memload reports ${await startMemload(sb, writer, WRITE_MIBPS)} MiB/s`)
  const plan = await planned()
  // Back onto spot (not measured), then the same moves one by one in spec order.
  for (const a of plan.arrivals) { const back = await migrateVm(sb, { vm: a.vm, to: 'spot' }); if (!back.ok) throw new Error(`${a.vm} back to spot: ${back.error}`) }
  const targets = new Map(plan.arrivals.map(a => [a.vm, a.to]))
  const base = await oneByOne(VMS.filter(v => targets.has(v.name)).map(v => ({ vm: v.name, to: targets.get(v.name) ?? '' })))
  return {
    bench: 'evacuate',
    machine: machineInfo(load0),
    settings: { vms: VMS, noticeS: NOTICE_S, writing: writer !== undefined ? { vm: writer, mibps: WRITE_MIBPS } : null, hosts: 'spot -> h2, h3 (one site, TCG)' },
    planned: plan,
    baselineOneByOne: base,
    plannedOverBaselineLastArrival: plan.lastArrivalS !== null && base.lastArrivalS !== null ? r3(plan.lastArrivalS / base.lastArrivalS) : null,
    meanArrivalS: { planned: mean(plan.arrivals.map(a => a.arrivedS)), baseline: mean(base.arrivals.map(a => a.arrivedS)) },
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

function mean (xs: number[]): number | null { return xs.length > 0 ? r3(xs.reduce((a, b) => a + b, 0) / xs.length) : null }

await runBench({ file: 'bench/evacuate.ts', main, log, cleanupMessage: 'down and clean up', cleanup: async () => { await sb.cleanup() } })
