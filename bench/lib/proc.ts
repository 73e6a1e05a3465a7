/** Process helpers shared by the benchmarks: run a command to completion, sleep. */
import { spawn } from 'node:child_process'

export interface Res { code: number | null, stdout: string, stderr: string }

export interface RunOptions {
  allowFailure?: boolean
  timeoutMs?: number
  input?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/** Runs argv; rejects on a non-zero exit unless allowFailure. A timeout kills it (SIGKILL). */
export async function run (argv: string[], opts: RunOptions = {}): Promise<Res> {
  const [cmd, ...args] = argv
  return await new Promise<Res>((resolve, reject) => {
    const c = spawn(cmd ?? '', args, { stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'], ...(opts.env !== undefined ? { env: opts.env } : {}), ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) })
    let stdout = ''
    let stderr = ''
    c.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
    c.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    if (opts.input !== undefined && c.stdin !== null) { c.stdin.on('error', () => {}); c.stdin.end(opts.input) }
    const timer = opts.timeoutMs !== undefined ? setTimeout(() => c.kill('SIGKILL'), opts.timeoutMs) : undefined
    c.on('error', reject)
    c.on('close', code => {
      if (timer !== undefined) clearTimeout(timer)
      if (code !== 0 && opts.allowFailure !== true) reject(new Error(`${argv.join(' ')} exited ${code}: ${(stderr || stdout).slice(-2000)}`))
      else resolve({ code, stdout, stderr })
    })
  })
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** Median of a list (NaN when empty). */
export function median (xs: number[]): number {
  const s = xs.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

/** Least-squares slope and intercept of y over x. */
export function linearFit (xs: number[], ys: number[]): { slope: number, intercept: number } {
  const n = Math.min(xs.length, ys.length)
  const mx = xs.slice(0, n).reduce((a, b) => a + b, 0) / n
  const my = ys.slice(0, n).reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += ((xs[i] ?? 0) - mx) * ((ys[i] ?? 0) - my)
    den += ((xs[i] ?? 0) - mx) ** 2
  }
  const slope = den === 0 ? NaN : num / den
  return { slope, intercept: my - slope * mx }
}

/** Rounds for JSON output. */
export const r3 = (x: number): number => Math.round(x * 1000) / 1000
