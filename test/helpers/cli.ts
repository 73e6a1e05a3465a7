/** Runs the real `supercloud` CLI as a user would, against a private state directory. */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { registerPrefix, sweepPrefix } from './sweep-lib.ts'
import { openStateStore } from '../../blanket-manager/state/store.ts'
import { PgStateStore } from '../../blanket-manager/state/pg/store.ts'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'bin', 'supercloud')

export interface CliResult { code: number, stdout: string, stderr: string }

/** Collects the JSON lines a child (e.g. `events --follow --json`) prints on stdout, as they come. */
export function jsonLines<T> (child: import('node:child_process').ChildProcess): T[] {
  const out: T[] = []
  let buf = ''
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString()
    const lines = buf.split('\n')
    buf = lines.pop() ?? ''
    for (const l of lines) if (l.trim() !== '') out.push(JSON.parse(l) as T)
  })
  return out
}

export interface Sandbox {
  dir: string
  stateRoot: string
  env: NodeJS.ProcessEnv
  spec: string
  run: (args: string[], opts?: { timeoutMs?: number, stdin?: string }) => Promise<CliResult>
  /** Starts the CLI and returns the child (for interrupt tests). */
  start: (args: string[]) => import('node:child_process').ChildProcess
  /** The prefix of the supercloud named `name` in this sandbox, once `up` chose it (registered for sweeping). */
  prefix: (name: string) => string | undefined
}

/**
 * A private state root and spec file for one test; teardown runs `down` and sweeps
 * anything left with the supercloud's prefix.
 */
export function sandbox (t: Test, specText: string, name: string, extraEnv: NodeJS.ProcessEnv = {}): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), 'sc-e2e-'))
  const stateRoot = join(dir, 'state')
  const spec = join(dir, 'supercloud.yaml')
  writeFileSync(spec, specText)
  const env: NodeJS.ProcessEnv = { ...process.env, SUPERCLOUD_STATE_DIR: stateRoot, ...extraEnv }
  const start = (args: string[]): import('node:child_process').ChildProcess =>
    spawn(CLI, ['-f', spec, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  const run = async (args: string[], opts: { timeoutMs?: number, stdin?: string } = {}): Promise<CliResult> => {
    const child = start(args)
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdin?.end(opts.stdin ?? '')
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600000)
    const code = await new Promise<number>(resolve => child.on('exit', c => resolve(c ?? 137)))
    clearTimeout(timer)
    // Register the supercloud's prefix as soon as it exists, so the end-of-run sweep removes
    // its namespaces even when this test is killed (tap's timeout) before its teardown runs.
    prefix(name)
    return { code, stdout, stderr }
  }
  const seen = new Set<string>()
  const known = new Map<string, string>()
  const prefix = (n: string): string | undefined => {
    // Never create a state by looking (a test may assert that `down` removed it). With
    // SUPERCLOUD_STATE (the e2e specs run against PostgreSQL) the state is in its schema.
    const url = env.SUPERCLOUD_STATE !== undefined && env.SUPERCLOUD_STATE !== '' ? env.SUPERCLOUD_STATE : undefined
    if (url === undefined ? !existsSync(join(stateRoot, n, 'state.db')) : !PgStateStore.exists(n, url)) return known.get(n)
    try {
      const s = openStateStore(n, join(stateRoot, n), url)
      const p = s.getMeta('prefix')
      s.close()
      if (p !== undefined && !seen.has(p)) { seen.add(p); registerPrefix(p) }
      if (p !== undefined) known.set(n, p)
      return p
    } catch { return undefined }
  }
  t.teardown(async () => {
    const p = prefix(name)
    // SC_KEEP_TEST_DIRS: keep the hosts' and agents' logs for a post-mortem (`down` removes the state).
    if (process.env.SC_KEEP_TEST_DIRS !== undefined) {
      const kept = join(dir, 'kept-logs')
      mkdirSync(kept, { recursive: true })
      spawnSync('sh', ['-c', 'cd "$1" && find . \\( -name "*.log" -o -name "state.db" \\) -size -64M -exec cp --parents {} "$2" \\;', 'sh', stateRoot, kept])
    }
    await run(['down'], { timeoutMs: 180000 }).catch(() => {})
    if (p !== undefined) sweepPrefix(p)
    if (process.env.SC_KEEP_TEST_DIRS === undefined) rmSync(dir, { recursive: true, force: true })
  })
  return { dir, stateRoot, env, spec, run, start, prefix }
}
