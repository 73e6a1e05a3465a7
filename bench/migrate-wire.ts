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
import { cpus, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { CliSandbox } from './lib/cli.ts'
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

const spec = `
name: migwire
sites:
  a: { subnet: 198.18.56.0/24 }
  b: { subnet: 198.18.57.0/24 }
wan: { bandwidth: 200mbit, delay: 5ms }
hosts:
  h1: { site: a, memory: 1024M, hypervisor: { accel: tcg } }
  h2: { site: a, memory: 1024M, hypervisor: { accel: tcg } }
  h4: { site: a, memory: 1024M, hypervisor: { accel: tcg } }
  h3: { site: b, memory: 1024M, hypervisor: { accel: tcg } }
images:
  tiny: { builtin: tiny }
vms:
  mover:
    image: tiny
    host: h2
    memory: 256M
    nics: [ { name: eth0, address: ${MOVER_IP}/24 } ]
  probe:
    image: tiny
    host: h1
    memory: 96M
    nics: [ { name: eth0, address: 198.19.56.102/24 } ]
network:
  port: 4789
  wires:
    - mover.eth0 -- probe.eth0
  extenders:
    a: { gateway: h1 }
    b: { gateway: h3 }
`

const log = (m: string): void => { process.stderr.write(`[migrate-wire] ${m}\n`) }
const t0 = Date.now()
const load0 = loadavg()

interface ProbeSummary { sent: number, received: number, lost: number, maxGapMs: number }
interface QemuSummary { mode: string, postcopy: boolean, totalMs: number, downtimeMs: number, sentBytes: number, iterations: number, switchoverHoldMs?: number }

function lastJson<T> (text: string): T | undefined {
  const lines = text.split('\n').map(l => l.trim()).filter(l => l.startsWith('{') && l.endsWith('}'))
  const l = lines.at(-1)
  return l === undefined ? undefined : JSON.parse(l) as T
}

const sb = new CliSandbox(spec, 'sc-bench-migw-')

async function main (): Promise<Record<string, unknown>> {
  log('up (4 hosts, 2 guests, 1 wire, extenders a <-> b)')
  const up = await sb.ok(['up'], { timeoutMs: 900000 })
  const st = await sb.status()
  log(`prefix ${st.prefix ?? ''}; up took ${(up.ms / 1000).toFixed(1)} s`)

  await sb.inGuest('mover', 'netprobe echo 7 >/dev/null 2>&1 & sleep 1; pidof netprobe')
  const startProbe = async (): Promise<void> => {
    await sb.inGuest('probe', `netprobe send ${MOVER_IP} 7 --interval-ms 10 --count 1000000 --linger-ms 300 > /tmp/p.out 2>&1 & sleep 1`)
  }
  const stopProbe = async (): Promise<ProbeSummary | undefined> =>
    lastJson<ProbeSummary>(await sb.inGuest('probe', 'kill -INT $(pidof netprobe); sleep 1; cat /tmp/p.out'))
  const control = async (): Promise<ProbeSummary | undefined> => {
    await startProbe()
    await sleep(4000)
    return await stopProbe()
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
      const out = await sb.inGuest('mover', `memload --mb 128 --seconds 0 --write-mbps ${w} > /tmp/ml.out 2>&1 & sleep 8; tail -n 3 /tmp/ml.out`)
      const rates = [...out.matchAll(/mbps=([\d.]+)/g)].map(m => Number(m[1]))
      achieved = rates.length > 0 ? r3(median(rates)) : null
      log(`workload ${w} MiB/s: memload reports ${achieved} MiB/s`)
    }
    for (const mode of MODES) {
      for (const leg of LEGS) {
        const label = `${w} MiB/s ${mode} ${leg.from} -> ${leg.to}`
        if (Date.now() - t0 > BUDGET_MS) { skipped.push(`${label} (budget)`); continue }
        if (where !== leg.from) { skipped.push(`${label} (the mover is on ${where})`); continue }
        const base = await control()
        await startProbe()
        const r = await sb.run(['migrate', 'mover', '--to', leg.to, '--mode', mode, '--json', '--deadline', DEADLINE, '--max-downtime', MAX_DOWNTIME], { timeoutMs: 300000 })
        await sleep(1000)
        const probe = await stopProbe().catch(() => undefined)
        const q = r.code === 0 ? JSON.parse(r.stdout) as QemuSummary : undefined
        where = q !== undefined ? leg.to : (await sb.status()).vms.find(v => v.name === 'mover')?.host ?? where
        const c: Record<string, unknown> = { workloadMiBps: w, achievedMiBps: achieved, mode, ...leg, ok: q !== undefined, cliMs: r3(r.ms) }
        if (q === undefined) c.error = r.stderr.split('\n').filter(l => /error/i.test(l)).slice(-2).join(' ').slice(0, 400)
        else c.qemu = { downtimeMs: q.downtimeMs, totalMs: q.totalMs, sentBytes: q.sentBytes, postcopy: q.postcopy, iterations: q.iterations, ...(q.switchoverHoldMs !== undefined ? { switchoverHoldMs: q.switchoverHoldMs } : {}) }
        if (probe !== undefined) c.probe = probe
        if (base !== undefined) c.baseline = base
        if (probe !== undefined && base !== undefined && base.maxGapMs > 0) c.gapOverBaseline = r3(probe.maxGapMs / base.maxGapMs)
        log(`${label}: ${q !== undefined ? `total ${q.totalMs} ms, qemu downtime ${q.downtimeMs} ms${q.switchoverHoldMs !== undefined ? ` (hold ${q.switchoverHoldMs} ms)` : ''}${q.postcopy ? ', postcopy' : ''}` : `FAILED ${String(c.error)}`}` +
          `, probe gap ${probe?.maxGapMs ?? '?'} ms (baseline ${base?.maxGapMs ?? '?'} ms), lost ${probe?.lost ?? '?'} of ${probe?.sent ?? '?'}`)
        cases.push(c)
      }
    }
    if (w > 0) await sb.inGuest('mover', 'kill $(pidof memload); sleep 1; pidof memload || echo stopped')
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
        qemuDowntimeMsMedian: median(sel.map(c => (c.qemu as QemuSummary).downtimeMs))
      }
    }
  }
  const gaps = ok.map(c => (c.probe as ProbeSummary | undefined)?.maxGapMs ?? NaN).filter(Number.isFinite)
  return {
    bench: 'migrate-wire',
    prefix: st.prefix,
    machine: { cores: cpus().length, loadavgStart: load0.map(r3), loadavgEnd: loadavg().map(r3) },
    settings: { guestMemory: '256M', memloadMb: 128, modes: MODES, workloadsMiBps: WORKLOADS, deadline: DEADLINE, maxDowntime: MAX_DOWNTIME, probeIntervalMs: 10, wan: '200mbit, 5ms one way', wire: 'mover.eth0 -- probe.eth0, probe on h1 (gateway of site a)' },
    summary,
    ratios: {
      gapMedianOverBaselineMedian: r3(median(gaps) / median(ok.map(c => (c.baseline as ProbeSummary | undefined)?.maxGapMs ?? NaN))),
      gapMedianOverSeedVirtualWire: { low: r3(median(gaps) / 1300), high: r3(median(gaps) / 2800) },
      gapMedianOverSeedHecaHybrid: r3(median(gaps) / 100)
    },
    seedAnchors: { virtualWireDowntimeMs: [1300, 2800], hecaHybridDowntimeMs: 100 },
    initialProbe: first,
    cases,
    skipped,
    upMs: r3(up.ms),
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

let exitCode = 0
try {
  const out = await main()
  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
} catch (err) {
  process.stderr.write(`bench/migrate-wire.ts failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  exitCode = 1
} finally {
  log('down and clean up')
  await sb.cleanup()
}
process.exit(exitCode)
