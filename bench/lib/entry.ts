/**
 * What every benchmark does around its measurements: a tagged log on stderr, the machine it
 * ran on, and the entry point that prints the result as one JSON object on stdout, reports a
 * failure on stderr and always runs the clean-up before the process exits.
 */
import { cpus, loadavg } from 'node:os'
import { r3 } from './proc.ts'

export type BenchLog = (message: string) => void

/** A log writing `[tag] message` lines on stderr. */
export function benchLog (tag: string): BenchLog {
  return m => { process.stderr.write(`[${tag}] ${m}\n`) }
}

export interface MachineInfo { cores: number, loadavgStart: number[], loadavgEnd: number[] }

/** The machine's cores, its load averages when the benchmark started (`loadavgStart`) and now. */
export function machineInfo (loadavgStart: number[]): MachineInfo {
  return { cores: cpus().length, loadavgStart: loadavgStart.map(r3), loadavgEnd: loadavg().map(r3) }
}

export interface BenchEntry {
  /** The benchmark's file, named in the failure line (e.g. `bench/migrate.ts`). */
  file: string
  /** The measurements; what it returns is printed as JSON on stdout. */
  main: () => Promise<Record<string, unknown>>
  log: BenchLog
  /** Logged before the clean-up (e.g. `down and clean up`). */
  cleanupMessage: string
  /** Run after main, whether it returned or threw. */
  cleanup: () => Promise<void>
}

/**
 * Runs a benchmark: main, its result on stdout, then the clean-up; exits 0, or 1 when main
 * threw (its stack on stderr). A clean-up that throws rejects instead of exiting.
 */
export async function runBench (b: BenchEntry): Promise<never> {
  let exitCode = 0
  try {
    const out = await b.main()
    process.stdout.write(JSON.stringify(out, null, 2) + '\n')
  } catch (err) {
    process.stderr.write(`${b.file} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    exitCode = 1
  } finally {
    b.log(b.cleanupMessage)
    await b.cleanup()
  }
  process.exit(exitCode)
}
