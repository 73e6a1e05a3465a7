/**
 * bench/migrate-wire.ts — downtime as a peer sees it when the migrating guest's NIC is a
 * VirtualWire NIC, within a site and across sites (the wire then goes through the OpenVPN
 * extenders, as in examples/virtualwire.yaml), through the real CLI (`supercloud migrate
 * --json`) in a private state directory.
 *
 * Topology: sites a (h1, h2, h4) and b (h3) joined by the emulated WAN (200 Mbit/s, 5 ms one
 * way); extenders a: h1 <-> b: h3. Guest `mover` (256 MiB) starts on h2, guest `probe` (96 MiB)
 * runs on h1; one wire `mover.eth0 -- probe.eth0` (a connector between their hosts). The mover
 * runs `netprobe echo 7`; during each migration the probe runs `netprobe send <mover> 7
 * --interval-ms 10` from 1 s before `migrate` until 1 s after it returns:
 * maxGapMs = the longest time between two echoes = downtime as a peer sees it.
 *
 * Legs per workload and mode: h2 -> h4 (within site a), h4 -> h3 (to site b), h3 -> h2 (back).
 * Before each leg, the same probe over 4 s without migration (the echo gap floor where the
 * mover is: within the site, or across the extender) = the same-run baseline.
 * Workloads inside the mover: idle, or `memload --mb 128 --seconds 0 --write-mbps 16`.
 * Prints one JSON object.
 * Usage: node --import tsx bench/migrate-wire.ts [--modes auto] [--workloads 0,16]
 *        [--budget-min 10] [--deadline 60s] [--max-downtime 100ms]
 */
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import {
  bringUp, guestProbe, hostOf, MEMLOAD_MB, migrateVm, migrationLabSpec, overSeed, PROBE_INTERVAL_MS, qemuBrief, SEED_ANCHORS,
  startEcho, startMemload, stopMemload, WAN, type ProbeSummary
} from './lib/migrate-lab.ts'
import { median, r3, sleep } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'auto' },
    workloads: { type: 'string', default: '0,16' },
    'budget-min': { type: 'string', default: '10' },
    deadline: { type: 'string', default: '60s' },
    'max-downtime': { type: 'string', default: '100ms' }
  }
})
const MODES = (values.modes ?? '').split(',').filter(Boolean)
const WORKLOADS = (values.workloads ?? '').split(',').filter(Boolean).map(Number)
const BUDGET_MS = Number(values['budget-min']) * 60000
const DEADLINE = values.deadline ?? '60s'
const MAX_DOWNTIME = values['max-downtime'] ?? '100ms'
const MOVER_IP = '198.19.56.101'
const LEGS: Array<{ from: string, to: string, path: 'within' | 'to-b' | 'back' }> = [
  { from: 'h2', to: 'h4', path: 'within' },
  { from: 'h4', to: 'h3', path: 'to-b' },
  { from: 'h3', to: 'h2', path: 'back' }
]

const spec = migrationLabSpec({
  name: 'migwire',
  octet: 56,
  hosts: { a: ['h1', 'h2', 'h4'], b: ['h3'] },
  hostMemory: '1024M',
  vms: [
    { name: 'mover', host: 'h2', memory: '256M', address: `${MOVER_IP}/24` },
    { name: 'probe', host: 'h1', memory: '96M', address: '198.19.56.102/24' }
  ],
  extra: `network:
  port: 4789
  wires:
    - mover.eth0 -- probe.eth0
  extenders:
    a: { gateway: h1 }
    b: { gateway: h3 }
`
})

const log = benchLog('migrate-wire')
const t0 = Date.now()
const load0 = loadavg()

const sb = new CliSandbox(spec, 'sc-bench-migw-')

async function main (): Promise<Record<string, unknown>> {
  const { up, status: st } = await bringUp(sb, log, '4 hosts, 2 guests, 1 wire, extenders a <-> b')

  await startEcho(sb, 'mover')
  const probe = guestProbe({ sb, vm: 'probe', target: MOVER_IP, settleS: 1 })
  const control = async (): Promise<ProbeSummary | undefined> => {
    await probe.start()
    await sleep(4000)
    return await probe.stop()
  }
  // The wire works at all before anything moves.
  const first = await control()
  if (first === undefined || first.received === 0) throw new Error(`the probe gets no echo over the wire before any migration: ${JSON.stringify(first)}`)

  const cases: Array<Record<string, unknown>> = []
  const skipped: string[] = []
  let where = 'h2'
  for (const w of WORKLOADS) {
    let achieved: number | null = null
    if (w > 0) {
      achieved = await startMemload(sb, 'mover', w)
      log(`workload ${w} MiB/s: memload reports ${achieved} MiB/s`)
    }
    for (const mode of MODES) {
      for (const leg of LEGS) {
        const label = `${w} MiB/s ${mode} ${leg.from} -> ${leg.to}`
        if (Date.now() - t0 > BUDGET_MS) { skipped.push(`${label} (budget)`); continue }
        if (where !== leg.from) { skipped.push(`${label} (the mover is on ${where})`); continue }
        const base = await control()
        await probe.start()
        const m = await migrateVm(sb, { vm: 'mover', to: leg.to, mode, deadline: DEADLINE, maxDowntime: MAX_DOWNTIME })
        await sleep(1000)
        const gap = await probe.stop().catch(() => undefined)
        const q = m.ok ? m.result : undefined
        where = q !== undefined ? leg.to : await hostOf(sb, 'mover') ?? where
        const c: Record<string, unknown> = { workloadMiBps: w, achievedMiBps: achieved, mode, ...leg, ok: q !== undefined, cliMs: r3(m.cli.ms) }
        if (!m.ok) c.error = m.error
        else c.qemu = { ...qemuBrief(m.result), ...(m.result.switchoverHoldMs !== undefined ? { switchoverHoldMs: m.result.switchoverHoldMs } : {}) }
        if (gap !== undefined) c.probe = gap
        if (base !== undefined) c.baseline = base
        if (gap !== undefined && base !== undefined && base.maxGapMs > 0) c.gapOverBaseline = r3(gap.maxGapMs / base.maxGapMs)
        log(`${label}: ${q !== undefined ? `total ${q.totalMs} ms, qemu downtime ${q.downtimeMs} ms${q.switchoverHoldMs !== undefined ? ` (hold ${q.switchoverHoldMs} ms)` : ''}${q.postcopy ? ', postcopy' : ''}` : `FAILED ${String(c.error)}`}` +
          `, probe gap ${gap?.maxGapMs ?? '?'} ms (baseline ${base?.maxGapMs ?? '?'} ms), lost ${gap?.lost ?? '?'} of ${gap?.sent ?? '?'}`)
        cases.push(c)
      }
    }
    if (w > 0) await stopMemload(sb, 'mover')
  }

  const ok = cases.filter(c => c.ok === true)
  const summary: Record<string, unknown> = {}
  for (const w of WORKLOADS) {
    for (const path of ['within', 'to-b', 'back']) {
      const sel = ok.filter(c => c.workloadMiBps === w && c.path === path)
      if (sel.length === 0) continue
      summary[`${path}-${w}MiBps`] = {
        n: sel.length,
        probeGapMsMedian: median(sel.map(c => (c.probe as ProbeSummary | undefined)?.maxGapMs ?? NaN)),
        baselineGapMsMedian: median(sel.map(c => (c.baseline as ProbeSummary | undefined)?.maxGapMs ?? NaN)),
        qemuDowntimeMsMedian: median(sel.map(c => (c.qemu as { downtimeMs: number }).downtimeMs))
      }
    }
  }
  const gaps = ok.map(c => (c.probe as ProbeSummary | undefined)?.maxGapMs ?? NaN).filter(Number.isFinite)
  const seed = overSeed(median(gaps))
  return {
    bench: 'migrate-wire',
    prefix: st.prefix,
    machine: machineInfo(load0),
    settings: { guestMemory: '256M', memloadMb: MEMLOAD_MB, modes: MODES, workloadsMiBps: WORKLOADS, deadline: DEADLINE, maxDowntime: MAX_DOWNTIME, probeIntervalMs: PROBE_INTERVAL_MS, wan: WAN.label, wire: 'mover.eth0 -- probe.eth0, probe on h1 (gateway of site a)' },
    summary,
    ratios: {
      gapMedianOverBaselineMedian: r3(median(gaps) / median(ok.map(c => (c.baseline as ProbeSummary | undefined)?.maxGapMs ?? NaN))),
      gapMedianOverSeedVirtualWire: seed.virtualWire,
      gapMedianOverSeedHecaHybrid: seed.hecaHybrid
    },
    seedAnchors: SEED_ANCHORS,
    initialProbe: first,
    cases,
    skipped,
    upMs: r3(up.ms),
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

await runBench({ file: 'bench/migrate-wire.ts', main, log, cleanupMessage: 'down and clean up', cleanup: async () => { await sb.cleanup() } })
