/**
 * The real `supercloud` CLI against a private state directory and spec file, for benchmarks
 * (like test/helpers/cli.ts, without tap). `cleanup()` runs `down` and removes whatever
 * still carries the supercloud's prefix (processes in its namespaces, the namespaces, root
 * links), then the directory; it is also run on SIGINT/SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { StatusReport } from '../../blanket-manager/controller/index.ts'
import { onInterrupt } from './lab.ts'
import { run } from './proc.ts'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'bin', 'supercloud')

export interface CliResult { code: number, stdout: string, stderr: string, ms: number }

export class CliSandbox {
  readonly dir: string
  readonly spec: string
  readonly env: NodeJS.ProcessEnv
  prefix: string | undefined
  private readonly unregister: () => void
  private cleaned = false

  constructor (specText: string, tag = 'sc-bench-') {
    this.dir = mkdtempSync(join(tmpdir(), tag))
    this.spec = join(this.dir, 'supercloud.yaml')
    writeFileSync(this.spec, specText)
    this.env = { ...process.env, SUPERCLOUD_STATE_DIR: join(this.dir, 'state') }
    this.unregister = onInterrupt(async () => { await this.cleanup() })
  }

  start (args: string[]): ChildProcess {
    return spawn(CLI, ['-f', this.spec, ...args], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] })
  }

  async run (args: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
    const t0 = process.hrtime.bigint()
    const child = this.start(args)
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600000)
    const code = await new Promise<number>(resolve => child.on('exit', c => { resolve(c ?? 137) }))
    clearTimeout(timer)
    return { code, stdout, stderr, ms: Number(process.hrtime.bigint() - t0) / 1e6 }
  }

  async ok (args: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
    const r = await this.run(args, opts)
    if (r.code !== 0) throw new Error(`supercloud ${args.join(' ')} exited ${r.code}: ${r.stderr.slice(-2000)}${r.stdout.slice(-500)}`)
    return r
  }

  async status (): Promise<StatusReport> {
    const s = JSON.parse((await this.ok(['status', '--json'])).stdout) as StatusReport
    if (s.prefix !== undefined) this.prefix = s.prefix
    return s
  }

  /** One shell command in a guest (serial console); its output. */
  async inGuest (vm: string, cmd: string, timeoutS = 90): Promise<string> {
    const r = await this.run(['console', vm, '--run', cmd, '--timeout', String(timeoutS)], { timeoutMs: (timeoutS + 60) * 1000 })
    if (r.code !== 0) throw new Error(`${vm}: \`${cmd}\` exited ${r.code}: ${r.stdout}${r.stderr}`)
    return r.stdout
  }

  async cleanup (): Promise<void> {
    if (this.cleaned) return
    this.cleaned = true
    await this.run(['down'], { timeoutMs: 180000 }).catch(() => {})
    const p = this.prefix
    if (p !== undefined && /^[a-z][a-z0-9]{0,7}$/.test(p)) {
      const nsList = (await run(['ip', 'netns', 'list'], { allowFailure: true })).stdout.split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(`${p}-`))
      for (const ns of nsList) {
        const pids = (await run(['ip', 'netns', 'pids', ns], { allowFailure: true })).stdout.split('\n').filter(Boolean)
        for (const pid of pids) await run(['kill', '-9', pid], { allowFailure: true })
      }
      for (const ns of nsList) await run(['ip', 'netns', 'del', ns], { allowFailure: true })
      const links = (await run(['ip', '-o', 'link', 'show'], { allowFailure: true })).stdout.split('\n')
        .map(l => (l.split(': ')[1] ?? '').split('@')[0] ?? '').filter(n => n.startsWith(p))
      for (const l of links) await run(['ip', 'link', 'del', l], { allowFailure: true })
    }
    if (process.env.SC_KEEP_BENCH_DIRS === undefined) rmSync(this.dir, { recursive: true, force: true })
    this.unregister()
  }
}
