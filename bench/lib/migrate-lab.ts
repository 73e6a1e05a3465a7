/**
 * The migration benchmarks' test bed (bench/migrate.ts, bench/migrate-wire.ts,
 * bench/migrate-return.ts), driven through the real CLI in a CliSandbox: the spec (two sites
 * joined by the emulated WAN, TCG hosts, tiny guests), bringing it up, the guest tools typed
 * on the serial console (netprobe's echo and sender, memload), and `supercloud migrate --json`
 * with its outcome.
 */
import type { MigrateResult, StatusReport } from '../../blanket-manager/controller/index.ts'
import type { CliResult, CliSandbox } from './cli.ts'
import type { BenchLog } from './entry.ts'
import { median, r3 } from './proc.ts'

/** The emulated WAN between sites a and b. */
export const WAN = { bandwidth: '200mbit', delay: '5ms', bps: 200e6, label: '200mbit, 5ms one way' } as const

// ---- spec -------------------------------------------------------------------------------

export interface MigrationLabVm {
  name: string
  host: string
  /** e.g. 256M */
  memory: string
  /** eth0's address with its prefix length, e.g. 198.18.52.101/24. */
  address: string
  disks?: Array<{ name: string, size: string }>
}

export interface MigrationLabSpec {
  /** The supercloud's name. */
  name: string
  /** Third octet of site a's subnet (198.18.<octet>.0/24); site b's is the next one. */
  octet: number
  /** Host names of each site, in spec order (site a's first). */
  hosts: { a: string[], b: string[] }
  /** Every host's memory (e.g. 1024M); every host runs QEMU with TCG. */
  hostMemory: string
  /** Guests, all of the builtin tiny image with one NIC eth0. */
  vms: MigrationLabVm[]
  /** Top-level YAML appended as is (e.g. a `network:` section), ending in a newline. */
  extra?: string
}

/** The spec text (YAML) of a migration test bed. */
export function migrationLabSpec (o: MigrationLabSpec): string {
  const hosts = [...o.hosts.a.map(h => [h, 'a'] as const), ...o.hosts.b.map(h => [h, 'b'] as const)]
    .map(([h, site]) => `  ${h}: { site: ${site}, memory: ${o.hostMemory}, hypervisor: { accel: tcg } }\n`).join('')
  const vms = o.vms.map(v => `  ${v.name}:\n    image: tiny\n    host: ${v.host}\n    memory: ${v.memory}\n` +
    (v.disks !== undefined ? `    disks: [ ${v.disks.map(d => `{ name: ${d.name}, size: ${d.size} }`).join(', ')} ]\n` : '') +
    `    nics: [ { name: eth0, address: ${v.address} } ]\n`).join('')
  return `
name: ${o.name}
sites:
  a: { subnet: 198.18.${o.octet}.0/24 }
  b: { subnet: 198.18.${o.octet + 1}.0/24 }
wan: { bandwidth: ${WAN.bandwidth}, delay: ${WAN.delay} }
hosts:
${hosts}images:
  tiny: { builtin: tiny }
vms:
${vms}${o.extra ?? ''}`
}

export interface LabUp {
  /** The `supercloud up` run (its `ms` is the time up took). */
  up: CliResult
  status: StatusReport
}

/**
 * `supercloud up`, then `status` (which also gives the sandbox the prefix its clean-up
 * removes leftovers by). `what` describes the bed in the log, e.g. `3 hosts, 2 guests`.
 */
export async function bringUp (sb: CliSandbox, log: BenchLog, what: string): Promise<LabUp> {
  log(`up (${what})`)
  const up = await sb.ok(['up'], { timeoutMs: 900000 })
  const status = await sb.status()
  log(`prefix ${status.prefix ?? ''}; up took ${(up.ms / 1000).toFixed(1)} s`)
  return { up, status }
}

/** The host a VM runs on according to `supercloud status`. */
export async function hostOf (sb: CliSandbox, vm: string): Promise<string | undefined> {
  return (await sb.status()).vms.find(v => v.name === vm)?.host
}

// ---- netprobe -----------------------------------------------------------------------------

/** netprobe's summary: the last JSON line it prints. maxGapMs = the longest time between two echoes. */
export interface ProbeSummary { sent: number, received: number, lost: number, maxGapMs: number }

export const PROBE_INTERVAL_MS = 10
const ECHO_PORT = 7

/** The last line of `text` that is a JSON object, parsed. */
export function lastJson<T> (text: string): T | undefined {
  const lines = text.split('\n').map(l => l.trim()).filter(l => l.startsWith('{') && l.endsWith('}'))
  const l = lines.at(-1)
  return l === undefined ? undefined : JSON.parse(l) as T
}

/** netprobe's arguments for sending to `target`'s echo port every 10 ms until interrupted. */
export function probeSendArgs (target: string): string[] {
  return ['send', target, String(ECHO_PORT), '--interval-ms', String(PROBE_INTERVAL_MS), '--count', '1000000', '--linger-ms', '300']
}

/** Starts `netprobe echo 7` in the background in guest `vm`. */
export async function startEcho (sb: CliSandbox, vm: string): Promise<void> {
  await sb.inGuest(vm, `netprobe echo ${ECHO_PORT} >/dev/null 2>&1 & sleep 1; pidof netprobe`)
}

export interface GuestProbeOptions {
  sb: CliSandbox
  /** The guest that sends. */
  vm: string
  /** The echoing guest's address. */
  target: string
  /** Seconds waited after the sender starts, before start() returns. */
  settleS: number
}

/** A netprobe sender in a guest (output in the guest's /tmp/p.out). */
export interface GuestProbe {
  start: () => Promise<void>
  /** Interrupts the sender; its summary (undefined when it printed none). */
  stop: () => Promise<ProbeSummary | undefined>
}

export function guestProbe (o: GuestProbeOptions): GuestProbe {
  return {
    start: async () => {
      await o.sb.inGuest(o.vm, `netprobe ${probeSendArgs(o.target).join(' ')} > /tmp/p.out 2>&1 & sleep ${o.settleS}`)
    },
    stop: async () => lastJson<ProbeSummary>(await o.sb.inGuest(o.vm, 'kill -INT $(pidof netprobe); sleep 1; cat /tmp/p.out'))
  }
}

// ---- memload ------------------------------------------------------------------------------

/** MiB memload rewrites in the guest. */
export const MEMLOAD_MB = 128

/**
 * Starts memload in guest `vm` rewriting MEMLOAD_MB MiB at `mibps` MiB/s (in the background,
 * until stopMemload); the median rate it reports over its first 8 s (null when none).
 */
export async function startMemload (sb: CliSandbox, vm: string, mibps: number): Promise<number | null> {
  const out = await sb.inGuest(vm, `memload --mb ${MEMLOAD_MB} --seconds 0 --write-mbps ${mibps} > /tmp/ml.out 2>&1 & sleep 8; tail -n 3 /tmp/ml.out`)
  const rates = [...out.matchAll(/mbps=([\d.]+)/g)].map(m => Number(m[1]))
  return rates.length > 0 ? r3(median(rates)) : null
}

export async function stopMemload (sb: CliSandbox, vm: string): Promise<void> {
  await sb.inGuest(vm, 'kill $(pidof memload); sleep 1; pidof memload || echo stopped')
}

// ---- supercloud migrate --json ------------------------------------------------------------

export interface MigrateRequest {
  vm: string
  to: string
  /** --mode (auto, precopy, postcopy); the CLI's default when absent. */
  mode?: string
  /** --deadline, e.g. 60s. */
  deadline?: string
  /** --max-downtime, e.g. 100ms. */
  maxDowntime?: string
}

/** A migration that completed (the CLI's JSON summary) or failed (its error lines). */
export type MigrateOutcome =
  | { ok: true, result: MigrateResult, cli: CliResult }
  | { ok: false, error: string, cli: CliResult }

export function migrateArgs (m: MigrateRequest): string[] {
  return ['migrate', m.vm, '--to', m.to, ...(m.mode !== undefined ? ['--mode', m.mode] : []), '--json',
    ...(m.deadline !== undefined ? ['--deadline', m.deadline] : []),
    ...(m.maxDowntime !== undefined ? ['--max-downtime', m.maxDowntime] : [])]
}

/** The last two lines of a CLI's stderr that mention an error, at most 400 characters. */
export function errorLines (stderr: string): string {
  return stderr.split('\n').filter(l => /error/i.test(l)).slice(-2).join(' ').slice(0, 400)
}

/** `supercloud migrate … --json` (killed after 5 minutes). */
export async function migrateVm (sb: CliSandbox, m: MigrateRequest): Promise<MigrateOutcome> {
  const cli = await sb.run(migrateArgs(m), { timeoutMs: 300000 })
  if (cli.code !== 0) return { ok: false, error: errorLines(cli.stderr), cli }
  return { ok: true, result: JSON.parse(cli.stdout) as MigrateResult, cli }
}

/** QEMU's side of a migration, as the benchmarks report it. */
export interface QemuBrief { downtimeMs: number, totalMs: number, sentBytes: number, postcopy: boolean, iterations: number }

export function qemuBrief (r: MigrateResult): QemuBrief {
  return { downtimeMs: r.downtimeMs, totalMs: r.totalMs, sentBytes: r.sentBytes, postcopy: r.postcopy, iterations: r.iterations }
}

// ---- the seed's numbers -------------------------------------------------------------------

/** Downtimes the seed reports: VirtualWire's migration (a range) and Heca's hybrid migration. */
export const SEED_ANCHORS = { virtualWireDowntimeMs: [1300, 2800], hecaHybridDowntimeMs: 100 } as const

/** A measured gap over the seed's downtimes. */
export function overSeed (gapMs: number): { virtualWire: { low: number, high: number }, hecaHybrid: number } {
  const [low, high] = SEED_ANCHORS.virtualWireDowntimeMs
  return { virtualWire: { low: r3(gapMs / low), high: r3(gapMs / high) }, hecaHybrid: r3(gapMs / SEED_ANCHORS.hecaHybridDowntimeMs) }
}
