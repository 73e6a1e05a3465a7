/**
 * Pure parts of bench/overdriver.ts: the spec of each configuration, the burst command typed
 * in the guest, the parser of its output, and the summary ratios.
 */

export const CONFIGS = ['well-provisioned', 'disk-swap', 'coop-swap', 'migration', 'overdriver'] as const
export type ConfigName = typeof CONFIGS[number]

export interface SpecOptions {
  config: ConfigName
  /** Policy interval, seconds (the seed: 10). */
  intervalS: number
  /** Subnet's third octet (198.18.X.0/24). */
  octet: number
  requestedMb: number
  allocatedMb: number
  swapMb: number
  repositoryMb: number
}

/**
 * The Overdriver policy of each configuration, with the knobs the spec already has:
 *  - well-provisioned, disk-swap: no page repositories, a window that can never fill (no migration);
 *  - coop-swap: a repository on h2, never migrate;
 *  - migration: no repositories, sustained at the first overloaded interval (window 1/1);
 *  - overdriver: a repository on h2, the seed's time constants (window 8 of 12 intervals of
 *    10 s = 80 s of continuous overload, threshold 120 s) scaled to the interval, adaptive on.
 */
export function policyYaml (o: SpecOptions): string {
  const interval = `${o.intervalS}s`
  const repos = `  repositories: { hosts: [h2], memory: ${o.repositoryMb}M }\n`
  const never = `  window: 1000/1000\n  threshold: 24h\n  adaptive: false\n`
  switch (o.config) {
    case 'well-provisioned':
    case 'disk-swap':
      return `overdriver:\n  interval: ${interval}\n${never}`
    case 'coop-swap':
      return `overdriver:\n  interval: ${interval}\n${never}${repos}`
    case 'migration':
      return `overdriver:\n  interval: ${interval}\n  window: 1/1\n  threshold: ${interval}\n  adaptive: false\n`
    case 'overdriver': {
      const size = Math.max(1, Math.round(120 / o.intervalS))
      const sustained = Math.max(1, Math.round(80 / o.intervalS))
      return `overdriver:\n  interval: ${interval}\n  window: ${sustained}/${size}\n  threshold: 120s\n  adaptive: true\n${repos}`
    }
  }
}

export function benchSpec (o: SpecOptions): string {
  const mem = o.config === 'well-provisioned' ? `${o.requestedMb}M` : `{ requested: ${o.requestedMb}M, allocated: ${o.allocatedMb}M }`
  return `name: odb${CONFIGS.indexOf(o.config)}
sites:
  a: { subnet: 198.18.${o.octet}.0/24 }
hosts:
  h1: { site: a, memory: 1G, hypervisor: { accel: tcg } }
  h2: { site: a, memory: 1G, hypervisor: { accel: tcg } }
images:
  tiny: { builtin: tiny }
vms:
  v1: { image: tiny, host: h1, memory: ${mem}, swap: ${o.swapMb}M, nics: [ { name: eth0, address: 198.18.${o.octet}.101/24 } ] }
${policyYaml(o)}`
}

/**
 * The burst, typed at the guest's shell: memload fills `mb` MiB and rewrites it for `seconds`,
 * in the background (a console session may end when the VM moves); the guest's uptime before
 * and after goes to the same file.
 */
export function burstCommand (file: string, mb: number, seconds: number): string {
  return `( ( a=$(cut -d" " -f1 /proc/uptime); memload --mb ${mb} --seconds ${seconds} > ${file} 2>&1; echo "wall $a $(cut -d" " -f1 /proc/uptime) rc=$?" >> ${file} ) > /dev/null 2>&1 & )`
}

export interface BurstOutput {
  /** Pages rewritten in the timed loop (memload's `done pages_written=`). */
  pagesWritten: number
  /** Guest seconds from launch to exit (fill + timed loop + exit). */
  wallS: number
  /** memload's once-a-second rates (pages/s). */
  rates: number[]
  /** Longest gap between two once-a-second lines (s): the longest stall the workload saw. */
  maxGapS: number
}

/** Parses the burst file; undefined until the `wall` line is there. */
export function parseBurst (text: string): BurstOutput | undefined {
  const wall = /wall ([\d.]+) ([\d.]+)/.exec(text)
  const done = /done pages_written=(\d+)/.exec(text)
  if (wall === null || done === null) return undefined
  const lines = [...text.matchAll(/memload t=(\d+) ops\/s=(\d+)/g)]
  const ts = lines.map(m => Number(m[1]))
  let maxGapS = ts.length > 0 ? (ts[0] ?? 0) : 0
  for (let i = 1; i < ts.length; i++) maxGapS = Math.max(maxGapS, (ts[i] ?? 0) - (ts[i - 1] ?? 0))
  return { pagesWritten: Number(done[1]), wallS: Number(wall[2]) - Number(wall[1]), rates: lines.map(m => Number(m[2])), maxGapS }
}

/** Ratio rounded to 3 decimals; null when the base is 0 or not a number. */
export function ratio (x: number, base: number): number | null {
  if (!Number.isFinite(x) || !Number.isFinite(base) || base === 0) return null
  return Math.round(x / base * 1000) / 1000
}
