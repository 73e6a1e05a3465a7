/** Shared helpers for the Overdriver integration tests: temp dirs, raw sockets, child processes. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { PageRepository, type PageRepositoryOptions } from '../../../overdriver/repository/server.ts'

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
export const prefix = `sct${randomBytes(2).toString('hex')}`
export const haveQemuUtils = spawnSync('qemu-io', ['--version']).status === 0

export function tempDir (t: { teardown: (f: () => void) => void }, name: string): string {
  const d = mkdtempSync(join(tmpdir(), `${prefix}-${name}-`))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

type Teardown = { teardown: (f: () => void | Promise<void>) => void }

/** A page repository listening on a free loopback port, closed at the test's end. */
export async function listeningRepository (t: Teardown, opts: PageRepositoryOptions): Promise<{ repo: PageRepository, port: number }> {
  const repo = new PageRepository(opts)
  const port = await repo.listen(0)
  t.teardown(() => repo.close())
  return { repo, port }
}

/** `listeningRepository` and one client connected to it (closed at the test's end too). */
export async function repositoryWithClient (t: Teardown, opts: PageRepositoryOptions): Promise<{ repo: PageRepository, port: number, c: RepositoryClient }> {
  const { repo, port } = await listeningRepository(t, opts)
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => c.close())
  return { repo, port, c }
}

/** Sends bytes on a fresh connection and collects what comes back until the server closes or `ms` pass. */
export function poke (where: { port: number } | { path: string }, chunks: Buffer[], ms = 300): Promise<{ received: Buffer, closedByServer: boolean }> {
  return new Promise(resolve => {
    const s: Socket = 'path' in where ? connect(where.path) : connect(where.port, '127.0.0.1')
    const got: Buffer[] = []
    let closed = false
    s.on('data', d => got.push(d))
    s.on('error', () => {})
    s.on('close', () => { closed = true; finish() })
    s.on('connect', () => { for (const c of chunks) s.write(c) })
    const timer = setTimeout(finish, ms)
    let done = false
    function finish (): void {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      resolve({ received: Buffer.concat(got), closedByServer: closed })
    }
  })
}

/** Starts `node --import tsx <script> args` and resolves with the first stdout line parsed as JSON. */
export async function startNode (t: { teardown: (f: () => void | Promise<void>) => void }, script: string, args: string[]): Promise<{ proc: ChildProcess, first: Record<string, unknown>, stderr: () => string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  proc.stderr?.on('data', d => { err += d.toString() })
  t.teardown(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = ''
    const onData = (d: Buffer): void => {
      out += d.toString()
      const nl = out.indexOf('\n')
      if (nl >= 0) { proc.stdout?.off('data', onData); try { resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>) } catch (e) { reject(e) } }
    }
    proc.stdout?.on('data', onData)
    proc.on('exit', code => reject(new Error(`${script} exited ${code}: ${err}`)))
  })
  return { proc, first, stderr: () => err }
}

export async function killHard (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const gone = new Promise<void>(resolve => proc.once('exit', () => resolve()))
  proc.kill('SIGKILL')
  await gone
}

/** Deterministic page content: page p of generation g. */
export function pattern (p: number, g = 0, size = 4096): Buffer {
  const b = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(((p * 2654435761) ^ (g * 40503) ^ i) >>> 0, i)
  return b
}

/** Runs a command without blocking the event loop (servers under test live in this process). */
export function run (cmd: string, args: string[], timeoutMs = 120_000): Promise<{ status: number | null, stdout: string, stderr: string }> {
  return new Promise(resolve => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout?.on('data', d => { stdout += d.toString() })
    p.stderr?.on('data', d => { stderr += d.toString() })
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs)
    p.on('error', e => { stderr += e.message })
    p.on('close', status => { clearTimeout(timer); resolve({ status, stdout, stderr }) })
  })
}
