/**
 * bench/overdriver.ts — the seed's Overdriver evaluation (seed 002 ch. 6, Fig. 6.6-6.9),
 * scaled to this machine, through the real product: `supercloud up` with a VM that requested
 * 256M and is allocated 128M (balloon), its swap disk served over NBD by its host agent, and
 * `supercloud serve` running the Overdriver loop (agents decide, serve migrates).
 *
 * Per configuration (a fresh supercloud each, from its own spec):
 *   well-provisioned  the VM is given its 256M (no oversubscription): the baseline
 *   disk-swap         128M, swap to the local disk only, never migrated
 *   coop-swap         128M, cooperative swap to a page repository on h2, never migrated
 *   migration         128M, no repository, migrated at the first overloaded interval
 *   overdriver        128M, cooperative swap first, migration when the overload is sustained
 *                     (the seed's 8-of-12 intervals = 80 s, threshold 120 s, adaptive on)
 * the guest runs a steady base load (`memload --mb 16 --write-mbps 2`) and, one after the
 * other, bursts of each length (`memload --mb 96 --seconds D`: fill 96 MiB, rewrite it for
 * D s; the guest has about 48 MiB free at 128M, 176 MiB at 256M). A configuration whose VM
 * was migrated is brought down and up again before the next burst, so every burst starts
 * oversubscribed on h1; so is the overdriver configuration before every burst, because its
 * window (the last 120 s of intervals) would otherwise count the previous burst's intervals. The policy interval is 2 s (the seed: 10 s) so an overload ends 6 s
 * after the paging stops; the Overdriver window is the seed's in seconds (80 s of 120 s).
 *
 * Numbers per burst:
 *   - throughput: pages/s memload rewrote in its timed D s (`done pages_written` / D), and its
 *     fill time; as a ratio to the well-provisioned run of the same length (in the same run);
 *   - network: bytes through h1's uplink (both directions) from the burst's start until the
 *     overload has ended and any migration finished — every byte between the two hosts:
 *     migration stream, repository PUT/GET, plus the benchmark's own control traffic;
 *     repository requests (PUT/GET pages) from h2's agent;
 *   - peer space: the page repository's peak use (sampled every second from h2's agent), plus
 *     the VM's requested memory on the target when it was migrated (the space a migration
 *     target must keep free);
 *   - events: overload started/classified/ended, cooperative swap on, migration decided/completed.
 * Network and space are also given relative to migration-only (the seed's Fig. 6.9: 46% of
 * the traffic, 15-17% of the space over its expected mix; here: over the bursts measured).
 *
 * Usage: node --import tsx bench/overdriver.ts [--bursts 10,30,60,120] [--configs all|a,b]
 *        [--interval 2] [--burst-mb 96] [--base-mb 16] [--base-mbps 2] [--baseline-max 30]
 * (--bursts 10,30,60,120,300 for the seed's longest burst; --baseline-max S caps the
 * well-provisioned bursts at S s, since its rewrite rate does not depend on the length:
 * --baseline-max 300 measures every length)
 */
import { connect } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import { AgentClient } from '../blanket-manager/agent/client.ts'
import { hostNs } from '../drivers/local/names.ts'
import { CliSandbox } from './lib/cli.ts'
import { CONFIGS, benchSpec, burstCommand, parseBurst, policyYaml, ratio, type BurstOutput, type ConfigName } from './lib/overdriver.ts'
import { median, r3, run, sleep } from './lib/proc.ts'

const { values } = parseArgs({
  options: {
    bursts: { type: 'string', default: '10,30,60,120' },
    configs: { type: 'string', default: 'all' },
    interval: { type: 'string', default: '2' },
    'burst-mb': { type: 'string', default: '96' },
    'base-mb': { type: 'string', default: '16' },
    'base-mbps': { type: 'string', default: '2' },
    'baseline-max': { type: 'string', default: '30' }
  }
})
const BURSTS = (values.bursts ?? '').split(',').filter(Boolean).map(Number).sort((a, b) => a - b)
const CONFIG_LIST: ConfigName[] = values.configs === 'all' ? [...CONFIGS] : (values.configs ?? '').split(',').filter(Boolean) as ConfigName[]
for (const c of CONFIG_LIST) if (!CONFIGS.includes(c)) throw new Error(`--configs: unknown configuration ${c} (one of ${CONFIGS.join(', ')})`)
const INTERVAL_S = Number(values.interval)
const BURST_MB = Number(values['burst-mb'])
const BASE_MB = Number(values['base-mb'])
const BASE_MBPS = Number(values['base-mbps'])
const BASELINE_MAX = Number(values['baseline-max'])
const REQUESTED_MB = 256
const ALLOCATED_MB = 128
const SWAP_MB = 256
const REPOSITORY_MB = 256
const OCTET = 77

const log = (m: string): void => { process.stderr.write(`[overdriver ${new Date().toISOString().slice(11, 19)}] ${m}\n`) }
const t0 = Date.now()
const load0 = loadavg()

interface Ev { seq: number, type: string, vm?: string, host?: string, data: Record<string, unknown> }
interface RepoStats { usedPages: number, requests: Record<string, number> }

/** One supercloud for one configuration: up, serve, agents, base load. */
class Bed {
  readonly sb: CliSandbox
  readonly name: string
  private serve?: ChildProcess
  private serveErr = ''
  private agents = new Map<string, AgentClient>()
  prefix = ''

  constructor (readonly config: ConfigName) {
    const text = benchSpec({ config, intervalS: INTERVAL_S, octet: OCTET, requestedMb: REQUESTED_MB, allocatedMb: ALLOCATED_MB, swapMb: SWAP_MB, repositoryMb: REPOSITORY_MB })
    this.name = /^name: (\S+)/.exec(text)?.[1] ?? ''
    this.sb = new CliSandbox(text, `sc-bench-od-${config}-`)
  }

  async up (): Promise<number> {
    const r = await this.sb.ok(['up'], { timeoutMs: 900000 })
    this.prefix = (await this.sb.status()).prefix ?? ''
    this.serveErr = ''
    // --interval > 0: the poller is what ingests the agents' overload events (and so the decided migrations).
    const serve = this.sb.start(['serve', '--listen', '127.0.0.1:0', '--interval', '5'])
    serve.stderr?.on('data', (d: Buffer) => { this.serveErr = (this.serveErr + d.toString()).slice(-20000) })
    serve.stdout?.on('data', () => {})
    this.serve = serve
    for (let i = 0; i < 300 && !/overdriver: watching/.test(this.serveErr); i++) await sleep(200)
    if (!/overdriver: watching/.test(this.serveErr)) throw new Error(`serve did not start the Overdriver loop: ${this.serveErr.slice(-1000)}`)
    for (const h of ['h1', 'h2']) {
      const path = join(this.sb.dir, 'state', this.name, 'hosts', h, 'agent.sock')
      const sock = connect(path)
      await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
      this.agents.set(h, new AgentClient(h, sock))
    }
    await this.sb.inGuest('v1', `(memload --mb ${BASE_MB} --seconds 0 --write-mbps ${BASE_MBPS} > /tmp/base.out 2>&1 &)`)
    return r.ms
  }

  async down (): Promise<void> {
    for (const a of this.agents.values()) a.close()
    this.agents.clear()
    await this.stopServe()
    await this.sb.ok(['down'], { timeoutMs: 300000 })
  }

  async stopServe (): Promise<void> {
    const s = this.serve
    if (s === undefined || s.exitCode !== null || s.signalCode !== null) return
    const exited = new Promise<void>(resolve => s.once('exit', () => { resolve() }))
    s.kill('SIGTERM')
    await Promise.race([exited, sleep(10000)])
    if (s.exitCode === null && s.signalCode === null) s.kill('SIGKILL')
  }

  serveLog (): string[] { return this.serveErr.split('\n').filter(l => /overdriver/.test(l)) }

  async repoStats (): Promise<RepoStats | undefined> {
    const s = await this.agents.get('h2')?.overdriverStats().catch(() => undefined)
    return s?.repository as RepoStats | undefined
  }

  async uplinkBytes (): Promise<number> {
    const ns = hostNs(this.prefix, 'h1')
    const r = await run(['ip', 'netns', 'exec', ns, 'sh', '-c', 'cat /sys/class/net/eth0/statistics/rx_bytes /sys/class/net/eth0/statistics/tx_bytes'])
    return r.stdout.split('\n').filter(Boolean).map(Number).reduce((a, b) => a + b, 0)
  }

  async events (since: number): Promise<Ev[]> {
    const r = await this.sb.run(['events', '--json', '--since', String(since)])
    return r.stdout.trim().split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Ev)
  }

  async headSeq (): Promise<number> {
    const r = await this.sb.run(['events', '--json', '--limit', '1'])
    const last = r.stdout.trim().split('\n').filter(l => l.startsWith('{')).at(-1)
    return last === undefined ? 0 : (JSON.parse(last) as Ev).seq
  }

  async vmHost (): Promise<string | undefined> {
    return (await this.sb.status()).vms.find(v => v.name === 'v1')?.host
  }

  async cleanup (): Promise<void> {
    for (const a of this.agents.values()) a.close()
    await this.stopServe()
    await this.sb.cleanup()
  }
}

interface BurstResult {
  config: ConfigName
  burstS: number
  ok: boolean
  error?: string
  pagesPerSec?: number
  fillS?: number
  wallS?: number
  maxStallS?: number
  minRate?: number
  networkBytes?: number
  repositoryPeakBytes?: number
  repositoryPuts?: number
  repositoryGets?: number
  migrated?: boolean
  migrationTargetBytes?: number
  peerSpaceBytes?: number
  events?: string[]
  settleS?: number
}

async function burst (bed: Bed, D: number, n: number): Promise<BurstResult> {
  const out: BurstResult = { config: bed.config, burstS: D, ok: false }
  const seq = await bed.headSeq()
  const net0 = await bed.uplinkBytes()
  const repo0 = await bed.repoStats()
  let peak = repo0?.usedPages ?? 0
  const file = `/tmp/burst${n}.out`
  const start = Date.now()
  await bed.sb.inGuest('v1', burstCommand(file, BURST_MB, D))
  let stop = false
  const sampler = (async () => {
    while (!stop) {
      const s = await bed.repoStats()
      if (s !== undefined) peak = Math.max(peak, s.usedPages)
      await sleep(1000)
    }
  })()
  let parsed: BurstOutput | undefined
  try {
    await sleep(D * 1000)
    const deadline = Date.now() + (D + 600) * 1000
    let missing = 0
    while (parsed === undefined && Date.now() < deadline) {
      const r = await bed.sb.run(['console', 'v1', '--run', `cat ${file}`, '--timeout', '30'], { timeoutMs: 90000 })
      parsed = parseBurst(r.stdout)
      // The file lives in the guest's RAM: gone means the guest restarted (e.g. crashed after a migration).
      if (/can't open/.test(r.stdout + r.stderr) && ++missing >= 3) throw new Error(`${file} is gone from the guest: it restarted during the burst (see vms/v1/run/console.log on its host)`)
      if (parsed === undefined) await sleep(3000)
    }
    if (parsed === undefined) throw new Error(`burst did not finish: no result in ${file}`)
    // Settle: the overload ends (quiet intervals) and a decided migration finishes.
    const settleFrom = Date.now()
    let evs = await bed.events(seq)
    for (;;) {
      const started = evs.some(e => e.type === 'overload.started')
      const ended = evs.some(e => e.type === 'overload.ended')
      const decided = evs.some(e => e.type === 'overload.migration-decided')
      const migDone = evs.some(e => e.type === 'migration.completed' || e.type === 'migration.failed')
      if ((!started || ended) && (!decided || migDone)) break
      if (Date.now() - settleFrom > 240000) break
      await sleep(2000)
      evs = await bed.events(seq)
    }
    await sleep(INTERVAL_S * 1000)
    evs = await bed.events(seq)
    out.settleS = r3((Date.now() - settleFrom) / 1000)
    stop = true
    await sampler
    const repo1 = await bed.repoStats()
    const net1 = await bed.uplinkBytes()
    const migrated = evs.some(e => e.type === 'migration.completed' && e.vm === 'v1')
    out.ok = true
    out.pagesPerSec = r3(parsed.pagesWritten / D)
    out.wallS = r3(parsed.wallS)
    out.fillS = r3(Math.max(0, parsed.wallS - D))
    out.maxStallS = parsed.maxGapS
    out.minRate = parsed.rates.length > 0 ? Math.min(...parsed.rates) : 0
    out.networkBytes = net1 - net0
    out.repositoryPeakBytes = peak * 4096
    out.repositoryPuts = (repo1?.requests.put ?? 0) - (repo0?.requests.put ?? 0)
    out.repositoryGets = (repo1?.requests.get ?? 0) - (repo0?.requests.get ?? 0)
    out.migrated = migrated
    out.migrationTargetBytes = migrated ? REQUESTED_MB * 1048576 : 0
    out.peerSpaceBytes = out.repositoryPeakBytes + out.migrationTargetBytes
    out.events = evs.filter(e => e.vm === 'v1' && (e.type.startsWith('overload.') || e.type.startsWith('migration.')) && e.type !== 'migration.progress')
      .map(e => `${Math.round((Date.parse((e as unknown as { ts: string }).ts) - start) / 1000)}s ${e.type}${e.type === 'overload.classified' ? `:${String(e.data.classification)}` : ''}${e.type === 'overload.swap' ? `:${String(e.data.enabled)}` : ''}`)
  } catch (err) {
    out.error = (err as Error).message.slice(0, 500)
  } finally {
    stop = true
    await sampler
  }
  return out
}

async function runConfig (config: ConfigName, results: BurstResult[]): Promise<Record<string, unknown>> {
  const bed = new Bed(config)
  const info: Record<string, unknown> = { config, policy: policyYaml({ config, intervalS: INTERVAL_S, octet: OCTET, requestedMb: REQUESTED_MB, allocatedMb: ALLOCATED_MB, swapMb: SWAP_MB, repositoryMb: REPOSITORY_MB }).trim(), ups: [] as number[] }
  try {
    log(`${config}: up`)
    ;(info.ups as number[]).push(r3(await bed.up() / 1000))
    let n = 0
    for (const D0 of BURSTS) {
      const D = config === 'well-provisioned' ? Math.min(D0, BASELINE_MAX) : D0
      // Overdriver's window remembers the last 120 s of intervals: a burst right after another
      // would count as one oscillating overload (sustained sooner), so each burst gets a fresh one.
      const fresh = n > 0 && config === 'overdriver'
      if (fresh || (await bed.vmHost()) !== 'h1') {
        log(`${config}: ${fresh ? 'fresh controller state for the next burst' : 'v1 was migrated'}; down and up again so the burst starts oversubscribed on h1`)
        await bed.down()
        ;(info.ups as number[]).push(r3(await bed.up() / 1000))
      }
      log(`${config}: burst ${D} s`)
      const r = await burst(bed, D, n++)
      r.burstS = D0
      if (D !== D0) (r as unknown as Record<string, unknown>).measuredS = D
      results.push(r)
      log(`${config} ${D0} s: ${r.ok ? `${r.pagesPerSec} pages/s, fill ${r.fillS} s, stall ${r.maxStallS} s, net ${((r.networkBytes ?? 0) / 1048576).toFixed(1)} MiB, repo peak ${((r.repositoryPeakBytes ?? 0) / 1048576).toFixed(1)} MiB${r.migrated === true ? ', migrated' : ''}; ${(r.events ?? []).join(', ')}` : `FAILED ${r.error}`}`)
    }
    info.serveLog = bed.serveLog().slice(-20)
  } catch (err) {
    info.error = (err as Error).message.slice(0, 1000)
    log(`${config}: ${String(info.error)}`)
  } finally {
    await bed.cleanup()
  }
  return info
}

function summarize (results: BurstResult[]): Record<string, unknown> {
  const rows: Array<Record<string, unknown>> = []
  const find = (c: ConfigName, D: number): BurstResult | undefined => results.find(r => r.config === c && r.burstS === D && r.ok)
  for (const r of results.filter(x => x.ok)) {
    const wp = find('well-provisioned', r.burstS)
    const mig = find('migration', r.burstS)
    rows.push({
      config: r.config,
      burstS: r.burstS,
      pagesPerSec: r.pagesPerSec,
      throughputVsWellProvisioned: wp !== undefined ? ratio(r.pagesPerSec ?? NaN, wp.pagesPerSec ?? NaN) : null,
      fillS: r.fillS,
      maxStallS: r.maxStallS,
      networkMiB: r3((r.networkBytes ?? 0) / 1048576),
      networkVsMigration: mig !== undefined ? ratio(r.networkBytes ?? NaN, mig.networkBytes ?? NaN) : null,
      peerSpaceMiB: r3((r.peerSpaceBytes ?? 0) / 1048576),
      peerSpaceVsMigration: mig !== undefined ? ratio(r.peerSpaceBytes ?? NaN, mig.peerSpaceBytes ?? NaN) : null,
      migrated: r.migrated
    })
  }
  // Over all bursts measured (equal weight per burst length).
  const totals: Record<string, unknown> = {}
  for (const c of CONFIGS) {
    const sel = results.filter(r => r.config === c && r.ok)
    if (sel.length === 0) continue
    const lengths = sel.map(r => r.burstS)
    const wpSel = lengths.map(D => find('well-provisioned', D)).filter((x): x is BurstResult => x !== undefined)
    const migSel = lengths.map(D => find('migration', D)).filter((x): x is BurstResult => x !== undefined)
    const sum = (xs: BurstResult[], f: (r: BurstResult) => number): number => xs.reduce((a, r) => a + f(r), 0)
    totals[c] = {
      bursts: lengths,
      throughputVsWellProvisionedMedian: wpSel.length === sel.length ? median(sel.map(r => ratio(r.pagesPerSec ?? NaN, find('well-provisioned', r.burstS)?.pagesPerSec ?? NaN) ?? NaN)) : null,
      throughputVsWellProvisionedMin: wpSel.length === sel.length ? Math.min(...sel.map(r => ratio(r.pagesPerSec ?? NaN, find('well-provisioned', r.burstS)?.pagesPerSec ?? NaN) ?? NaN)) : null,
      networkMiB: r3(sum(sel, r => r.networkBytes ?? 0) / 1048576),
      networkVsMigration: migSel.length === sel.length ? ratio(sum(sel, r => r.networkBytes ?? 0), sum(migSel, r => r.networkBytes ?? 0)) : null,
      peerSpaceMiB: r3(sum(sel, r => r.peerSpaceBytes ?? 0) / 1048576),
      peerSpaceVsMigration: migSel.length === sel.length ? ratio(sum(sel, r => r.peerSpaceBytes ?? 0), sum(migSel, r => r.peerSpaceBytes ?? 0)) : null,
      migrations: sel.filter(r => r.migrated === true).length
    }
  }
  return { rows, totals }
}

function human (s: { rows: Array<Record<string, unknown>>, totals: Record<string, unknown> }): string {
  const lines = ['config            burst  pages/s  vs WP  fill s  stall s  net MiB  vs mig  space MiB  vs mig  migrated']
  const f = (v: unknown, w: number): string => String(v ?? '-').padStart(w)
  for (const r of s.rows) {
    lines.push(`${String(r.config).padEnd(16)} ${f(r.burstS, 6)} ${f(r.pagesPerSec, 8)} ${f(r.throughputVsWellProvisioned, 6)} ${f(r.fillS, 7)} ${f(r.maxStallS, 8)} ${f(r.networkMiB, 8)} ${f(r.networkVsMigration, 7)} ${f(r.peerSpaceMiB, 10)} ${f(r.peerSpaceVsMigration, 7)}  ${r.migrated === true ? 'yes' : 'no'}`)
  }
  lines.push('', 'over all bursts:')
  for (const [c, t] of Object.entries(s.totals)) lines.push(`  ${c}: ${JSON.stringify(t)}`)
  return lines.join('\n') + '\n'
}

const results: BurstResult[] = []
const configs: Array<Record<string, unknown>> = []
for (const c of CONFIG_LIST) configs.push(await runConfig(c, results))
const summary = summarize(results)
process.stderr.write('\n' + human(summary as { rows: Array<Record<string, unknown>>, totals: Record<string, unknown> }))
process.stdout.write(JSON.stringify({
  bench: 'overdriver',
  date: new Date().toISOString(),
  machine: { cores: cpus().length, loadavgStart: load0.map(r3), loadavgEnd: loadavg().map(r3) },
  settings: { bursts: BURSTS, configs: CONFIG_LIST, intervalS: INTERVAL_S, overloadOpsPerSec: 200, burstMb: BURST_MB, baseMb: BASE_MB, baseMbps: BASE_MBPS, baselineMaxS: BASELINE_MAX, requestedMb: REQUESTED_MB, allocatedMb: ALLOCATED_MB, swapMb: SWAP_MB, repositoryMb: REPOSITORY_MB },
  seedAnchors: { overdriverThroughputVsWellProvisioned: '>= 0.92 at any burst length (Fig 6.6)', networkVsMigration: 0.46, peerSpaceVsMigration: [0.15, 0.17] },
  ...summary,
  configs,
  bursts: results,
  wallSeconds: r3((Date.now() - t0) / 1000)
}, null, 2) + '\n')
process.exit(results.every(r => r.ok) && configs.every(c => c.error === undefined) ? 0 : 1)
