/**
 * bench/migrate.ts — live migration of a 256 MiB guest through the real CLI (`supercloud
 * migrate --json`), in a private state directory, with the guest idle or rewriting memory
 * (`memload --mb 128 --seconds 0 --write-mbps 16|100`), in each mode (auto, precopy,
 * postcopy), within a site (h1 <-> h2) and across the emulated WAN (200 Mbit/s, 5 ms one way).
 *
 * Numbers per migration:
 *   - qemu.downtimeMs / totalMs / sentBytes: what `supercloud migrate --json` reports
 *     (QEMU's own downtime: source stopped -> migration completed; total from the start of
 *     the migration command on the source to completion);
 *   - probe (within a site only): a probe guest on the same site sends a UDP datagram every
 *     10 ms to the migrating guest (`netprobe send <mover> 7 --interval-ms 10`), which echoes
 *     them (`netprobe echo 7`); maxGapMs = the longest time between two echoes = downtime as a
 *     peer sees it (guest NICs are on the SITE network: VirtualWire NIC re-pointing during
 *     migration is not finished yet, and across sites the mover's site address is not
 *     routable from the other site, so cross-site cases report QEMU's downtime only);
 *   - hostProbe (within a site): the same probe from host h2's namespace with the host copy
 *     of netprobe — free of the probe guest's TCG timer noise;
 *   - ideal = sentBytes / link bandwidth, with the link measured in the same run (iperf3
 *     between the hosts' namespaces) and, across the WAN, also the nominal 200 Mbit/s.
 * Baseline for the probe: the longest echo gap over the same kind of window with no
 * migration. Prints one JSON object.
 * Usage: node --import tsx bench/migrate.ts [--modes auto,precopy,postcopy] [--workloads 0,16,100]
 *        [--paths within,cross] [--cross-modes auto,postcopy] [--budget-min 9] [--deadline 60s]
 * (no migration starts after --budget-min minutes; the ones left are listed in `skipped`)
 */
import { spawn } from 'node:child_process'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { buildTinyImage } from '../images/guest/build.ts'
import { hostNs } from '../drivers/local/names.ts'
import { CliSandbox } from './lib/cli.ts'
import { benchLog, machineInfo, runBench } from './lib/entry.ts'
import { iperfClient } from './lib/measure.ts'
import {
  bringUp, guestProbe, hostOf, lastJson, MEMLOAD_MB, migrateVm, migrationLabSpec, overSeed, PROBE_INTERVAL_MS, probeSendArgs,
  qemuBrief, SEED_ANCHORS, startEcho, startMemload, stopMemload, WAN, type ProbeSummary
} from './lib/migrate-lab.ts'
import { median, r3, run, sleep } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    modes: { type: 'string', default: 'auto,precopy,postcopy' },
    workloads: { type: 'string', default: '0,16,100' },
    paths: { type: 'string', default: 'within,cross' },
    // precopy across the WAN is left out by default: see CROSS_PRECOPY_NOTE.
    'cross-modes': { type: 'string', default: 'auto,postcopy' },
    'budget-min': { type: 'string', default: '9' },
    deadline: { type: 'string', default: '60s' }
  }
})
const MODES = (values.modes ?? '').split(',').filter(Boolean)
const WORKLOADS = (values.workloads ?? '').split(',').filter(Boolean).map(Number)
const PATHS = (values.paths ?? '').split(',').filter(Boolean)
const CROSS_MODES = (values['cross-modes'] ?? '').split(',').filter(Boolean)
const CROSS_PRECOPY_NOTE = 'precopy across the WAN is not measured by default (--cross-modes auto,postcopy): in precopy mode ' +
  'QEMU runs without a return path, so the source reports "completed" while the last data is still on its way through the ' +
  'delayed WAN; the controller then finds the destination still "inmigrate" (reported as "other"), fails with ' +
  'SC_MIGRATION_FAILED "mover is other on h3 after the switch" and leaves a stale copy on the destination, which makes ' +
  'every later migration of the guest fail with SC_MIGRATION_DEST_BUSY. Pass --cross-modes auto,precopy,postcopy to reproduce.'
const BUDGET_MS = Number(values['budget-min']) * 60000
const DEADLINE = values.deadline ?? '60s'
const MOVER_IP = '198.18.52.101'

const spec = migrationLabSpec({
  name: 'migbench',
  octet: 52,
  hosts: { a: ['h1', 'h2'], b: ['h3'] },
  hostMemory: '1024M',
  vms: [
    { name: 'mover', host: 'h1', memory: '256M', address: `${MOVER_IP}/24` },
    { name: 'probe', host: 'h2', memory: '96M', address: '198.18.52.102/24' }
  ]
})

const log = benchLog('migrate')
const t0 = Date.now()
const load0 = loadavg()

const sb = new CliSandbox(spec, 'sc-bench-mig-')

async function main (): Promise<Record<string, unknown>> {
  const img = await buildTinyImage()
  const help = await run([img.tools.netprobe, '--help'], { allowFailure: true })
  if (!/netprobe send <ipv4> <port> \[--interval-ms/.test(help.stdout + help.stderr)) throw new Error(`netprobe --help does not offer send --interval-ms: ${help.stdout}${help.stderr}`)

  const { up, status: st } = await bringUp(sb, log, '3 hosts, 2 guests')
  const prefix = st.prefix ?? ''
  const addr = (h: string): string => st.hosts.find(x => x.name === h)?.address ?? ''
  const ns = (h: string): string => hostNs(prefix, h)

  // Link baselines: iperf3 between the hosts' namespaces (the path the migration stream takes).
  const srv = [spawn('ip', ['netns', 'exec', ns('h2'), 'iperf3', '-s', '-p', '5399'], { stdio: 'ignore' }),
    spawn('ip', ['netns', 'exec', ns('h3'), 'iperf3', '-s', '-p', '5399'], { stdio: 'ignore' })]
  await sleep(800)
  let withinBps = NaN
  let crossBps = NaN
  try {
    withinBps = (await iperfClient({ ns: ns('h1'), server: addr('h2'), port: 5399, seconds: 3 })).bps
    crossBps = (await iperfClient({ ns: ns('h1'), server: addr('h3'), port: 5399, seconds: 5 })).bps
  } finally {
    for (const s of srv) s.kill('SIGKILL')
  }
  log(`links: within site ${(withinBps / 1e6).toFixed(0)} Mbit/s, across the WAN ${(crossBps / 1e6).toFixed(0)} Mbit/s`)

  await startEcho(sb, 'mover')

  const guest = guestProbe({ sb, vm: 'probe', target: MOVER_IP, settleS: 0.2 })
  const hostProbeOut = { text: '' }
  const startProbes = async (): Promise<{ stopHost: () => Promise<ProbeSummary | undefined> }> => {
    await guest.start()
    const hp = spawn('ip', ['netns', 'exec', ns('h2'), img.tools.netprobe, ...probeSendArgs(MOVER_IP)], { stdio: ['ignore', 'pipe', 'pipe'] })
    hostProbeOut.text = ''
    hp.stdout.on('data', (d: Buffer) => { hostProbeOut.text += d.toString() })
    const exited = new Promise<void>(resolve => hp.once('exit', () => { resolve() }))
    await sleep(1000)
    return {
      stopHost: async () => {
        hp.kill('SIGINT')
        await Promise.race([exited, sleep(5000)])
        if (hp.exitCode === null && hp.signalCode === null) hp.kill('SIGKILL')
        return lastJson<ProbeSummary>(hostProbeOut.text)
      }
    }
  }

  // Baseline: the longest echo gap with no migration, over a similar window.
  const control: Array<{ guest?: ProbeSummary, host?: ProbeSummary }> = []
  for (let i = 0; i < 2; i++) {
    const p = await startProbes()
    await sleep(6000)
    const host = await p.stopHost()
    const g = await guest.stop()
    control.push({ ...(g !== undefined ? { guest: g } : {}), ...(host !== undefined ? { host } : {}) })
  }
  log(`control (no migration): guest probe max gap ${control.map(c => c.guest?.maxGapMs).join(', ')} ms, host probe ${control.map(c => c.host?.maxGapMs).join(', ')} ms`)

  const cases: Array<Record<string, unknown>> = []
  const skipped: string[] = []
  let where = 'h1'
  let broken: string | undefined
  const siteOf = (h: string): string => h === 'h3' ? 'b' : 'a'

  const migrate = async (to: string, mode: string, withProbe: boolean): Promise<Record<string, unknown>> => {
    const from = where
    const probes = withProbe ? await startProbes() : undefined
    const m = await migrateVm(sb, { vm: 'mover', to, mode, deadline: DEADLINE })
    let host: ProbeSummary | undefined
    let g: ProbeSummary | undefined
    if (probes !== undefined) {
      await sleep(1000)
      host = await probes.stopHost()
      g = await guest.stop().catch(() => undefined)
    }
    const q = m.ok ? m.result : undefined
    if (q !== undefined) where = to
    else where = await hostOf(sb, 'mover') ?? where
    const path = siteOf(from) === siteOf(to) ? 'within' : 'cross'
    const linkBps = path === 'within' ? withinBps : crossBps
    const out: Record<string, unknown> = { path, from, to, mode, ok: q !== undefined, cliMs: r3(m.cli.ms) }
    if (!m.ok) out.error = m.error
    else {
      out.qemu = qemuBrief(m.result)
      const idealMeasured = m.result.sentBytes * 8 / linkBps * 1000
      const idealNominal = m.result.sentBytes * 8 / WAN.bps * 1000
      out.idealMs = { measuredLink: r3(idealMeasured), ...(path === 'cross' ? { nominal200Mbit: r3(idealNominal) } : {}) }
      out.totalOverIdeal = { measuredLink: r3(m.result.totalMs / idealMeasured), ...(path === 'cross' ? { nominal200Mbit: r3(m.result.totalMs / idealNominal) } : {}) }
    }
    if (g !== undefined) out.probe = g
    if (host !== undefined) out.hostProbe = host
    log(`${from} -> ${to} ${mode}: ${q !== undefined ? `total ${q.totalMs} ms, qemu downtime ${q.downtimeMs} ms, sent ${(q.sentBytes / 1048576).toFixed(1)} MiB${q.postcopy ? ' (postcopy)' : ''}` : `FAILED ${String(out.error)}`}` +
      `${g !== undefined ? `, probe gap ${g.maxGapMs} ms` : ''}${host !== undefined ? `, host probe gap ${host.maxGapMs} ms` : ''}`)
    return out
  }

  for (const w of WORKLOADS) {
    let achievedMbps: number | null = null
    if (w > 0) {
      achievedMbps = await startMemload(sb, 'mover', w)
      log(`workload ${w} MiB/s: memload reports ${achievedMbps} MiB/s`)
    }
    for (const mode of MODES) {
      for (const path of PATHS) {
        const legs: Array<[string, boolean]> = path === 'within'
          ? [[where === 'h1' ? 'h2' : 'h1', true]]
          : [['h3', false], ['h1', false]] // there and back (both cross the WAN)
        if (path === 'cross' && !CROSS_MODES.includes(mode)) { skipped.push(`${w} MiB/s ${mode} across the WAN (--cross-modes)`); continue }
        for (const [to, probe] of legs) {
          const label = `${w} MiB/s ${mode} ${where} -> ${to}`
          if (Date.now() - t0 > BUDGET_MS) { skipped.push(`${label} (budget)`); continue }
          if (broken !== undefined) { skipped.push(`${label} (${broken})`); continue }
          if (where === to) { skipped.push(`${label} (the previous leg failed)`); continue }
          const c = await migrate(to, mode, probe)
          if (c.ok !== true && /after the switch|DEST_BUSY/.test(String(c.error))) broken = `not attempted: an earlier migration failed after the switch (${String(c.error)})`
          cases.push({ workloadMiBps: w, achievedMiBps: achievedMbps, leg: path === 'cross' && to !== 'h3' ? 'back' : 'out', ...c })
        }
      }
    }
    if (w > 0) await stopMemload(sb, 'mover')
  }

  // Summary: medians per (path, workload).
  const okCases = cases.filter(c => c.ok === true)
  const q = (c: Record<string, unknown>): { downtimeMs: number, totalMs: number } => c.qemu as { downtimeMs: number, totalMs: number }
  const summary: Record<string, unknown> = {}
  for (const path of PATHS) {
    for (const w of WORKLOADS) {
      const sel = okCases.filter(c => c.path === path && c.workloadMiBps === w)
      if (sel.length === 0) continue
      summary[`${path}-${w}MiBps`] = {
        n: sel.length,
        qemuDowntimeMsMedian: median(sel.map(c => q(c).downtimeMs)),
        totalMsMedian: median(sel.map(c => q(c).totalMs)),
        probeMaxGapMsMedian: path === 'within' ? median(sel.map(c => (c.probe as ProbeSummary | undefined)?.maxGapMs ?? NaN)) : null,
        hostProbeMaxGapMsMedian: path === 'within' ? median(sel.map(c => (c.hostProbe as ProbeSummary | undefined)?.maxGapMs ?? NaN)) : null,
        totalOverIdealMedian: r3(median(sel.map(c => (c.totalOverIdeal as { measuredLink: number }).measuredLink))),
        totalOverIdealNominalMedian: path === 'cross' ? r3(median(sel.map(c => (c.totalOverIdeal as { nominal200Mbit: number }).nominal200Mbit))) : null
      }
    }
  }
  const withinGaps = okCases.filter(c => c.path === 'within').map(c => (c.hostProbe as ProbeSummary | undefined)?.maxGapMs ?? NaN)
  const controlHost = median(control.map(c => c.host?.maxGapMs ?? NaN))
  const controlGuest = median(control.map(c => c.guest?.maxGapMs ?? NaN))
  const seed = overSeed(median(withinGaps))
  return {
    bench: 'migrate',
    prefix,
    machine: machineInfo(load0),
    settings: { guestMemory: '256M', memloadMb: MEMLOAD_MB, modes: MODES, crossModes: CROSS_MODES, workloadsMiBps: WORKLOADS, paths: PATHS, deadline: DEADLINE, probeIntervalMs: PROBE_INTERVAL_MS, wan: WAN.label },
    notes: CROSS_MODES.includes('precopy') ? [] : [CROSS_PRECOPY_NOTE],
    baselines: {
      linkMbps: { withinSite: r3(withinBps / 1e6), acrossWan: r3(crossBps / 1e6), wanNominal: WAN.bps / 1e6 },
      probeMaxGapNoMigrationMs: { guestProbe: controlGuest, hostProbe: controlHost, raw: control }
    },
    summary,
    ratios: {
      withinSiteHostProbeGapOverNoMigration: r3(median(withinGaps) / controlHost),
      withinSiteHostProbeGapOverSeedVirtualWire: seed.virtualWire,
      withinSiteHostProbeGapOverSeedHecaHybrid: seed.hecaHybrid
    },
    seedAnchors: SEED_ANCHORS,
    cases,
    skipped,
    upMs: r3(up.ms),
    wallSeconds: r3((Date.now() - t0) / 1000)
  }
}

await runBench({ file: 'bench/migrate.ts', main, log, cleanupMessage: 'down and clean up', cleanup: async () => { await sb.cleanup() } })
