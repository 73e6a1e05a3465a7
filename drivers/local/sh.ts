/**
 * Shell-outs of the local driver: run a command, get a typed error carrying the
 * command line and its stderr; start detached daemons; probe and stop processes.
 */
import { spawn } from 'node:child_process'
import { openSync, closeSync, readFileSync } from 'node:fs'
import { readFile, readdir, readlink } from 'node:fs/promises'
import { LocalDriverError, RemoteCommandError, outputTail } from '../../core/errors.ts'
import { commandOptions, localRunner, type CommandResult } from '../../core/exec.ts'

/** A command run by the local driver failed. */
export class ShellCommandError extends LocalDriverError {
  readonly argv: string[]
  readonly status: number | null
  readonly stderr: string
  constructor (argv: string[], status: number | null, stderr: string, cause?: unknown) {
    super(`\`${argv.join(' ')}\` ${status === null ? 'failed to run' : `exited ${status}`}: ${outputTail(stderr)}`, cause)
    this.argv = argv
    this.status = status
    this.stderr = stderr
  }
}

export type RunResult = CommandResult

export interface RunOptions {
  /** Return the result instead of throwing on non-zero exit. */
  allowFailure?: boolean
  input?: string
  signal?: AbortSignal
}

const here = localRunner()

/** Runs argv (no shell); throws ShellCommandError on non-zero exit (CancelledError when cancelled) unless allowFailure. */
export async function run (argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new LocalDriverError('empty command')
  try {
    return await here.run(argv, commandOptions(opts))
  } catch (err) {
    if (!(err instanceof RemoteCommandError)) throw err
    throw new ShellCommandError(argv, err.status, err.stderr, err.reason === 'start' ? err.cause : undefined)
  }
}

/** Runs argv inside network namespace `ns`. */
export async function nsRun (ns: string, argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  return await run(['ip', 'netns', 'exec', ns, ...argv], opts)
}

/**
 * Starts a long-lived process detached from this one (it survives the controller),
 * stdout and stderr appended to `logPath`. Returns its pid.
 */
export function startDaemon (argv: string[], logPath: string): number {
  const [cmd, ...args] = argv
  if (cmd === undefined) throw new LocalDriverError('empty command')
  const fd = openSync(logPath, 'a')
  try {
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', fd, fd] })
    if (child.pid === undefined) throw new LocalDriverError(`cannot start ${argv.join(' ')}`)
    child.on('error', () => { /* seen through the pid being dead */ })
    child.unref()
    return child.pid
  } finally {
    closeSync(fd)
  }
}

/** Whether a process exists and is not a zombie. */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 3, after the parenthesised command name.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** Reads a pid file; undefined when absent or garbage. */
export async function readPidFile (path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '')
  const pid = Number.parseInt(text.trim().split(/\s+/)[0] ?? '', 10)
  return Number.isInteger(pid) && pid > 1 ? pid : undefined
}

/** The network namespace identity of a process (e.g. "net:[4026532281]"), undefined when it is gone. */
export async function processNetns (pid: number): Promise<string | undefined> {
  return await readlink(`/proc/${pid}/ns/net`).catch(() => undefined)
}

/** Command line of a process, arguments joined by spaces; undefined when it is gone. */
export async function processCmdline (pid: number): Promise<string | undefined> {
  const raw = await readFile(`/proc/${pid}/cmdline`).catch(() => undefined)
  if (raw === undefined) return undefined
  return raw.toString().split('\0').filter(s => s !== '').join(' ')
}

export async function allPids (): Promise<number[]> {
  const entries = await readdir('/proc')
  return entries.filter(e => /^\d+$/.test(e)).map(e => Number(e))
}

/** Sends SIGTERM, waits up to `graceMs`, then SIGKILL; resolves once all are gone (or after the kill). */
export async function killPids (pids: number[], graceMs = 2000): Promise<void> {
  const live = pids.filter(isAlive)
  for (const pid of live) {
    try { process.kill(pid, 'SIGTERM') } catch { /* already gone */ }
  }
  const deadline = Date.now() + graceMs
  while (Date.now() < deadline && live.some(isAlive)) await sleep(50)
  for (const pid of live.filter(isAlive)) {
    try { process.kill(pid, 'SIGKILL') } catch { /* already gone */ }
  }
  const hard = Date.now() + 2000
  while (Date.now() < hard && live.some(isAlive)) await sleep(50)
}

/** True when an SSH banner comes back through `proxy` (a command whose stdio is the TCP stream) within timeoutMs. */
export async function sshBanner (proxy: string[], timeoutMs: number): Promise<boolean> {
  const [cmd, ...args] = proxy
  if (cmd === undefined) return false
  return await new Promise(resolve => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'ignore'] })
    let out = ''
    const done = (ok: boolean): void => { clearTimeout(timer); child.kill('SIGKILL'); resolve(ok) }
    const timer = setTimeout(() => done(false), timeoutMs)
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('SSH-')) done(true) })
    child.on('exit', () => done(out.includes('SSH-')))
    child.on('error', () => done(false))
    child.stdin.on('error', () => { /* ignore */ })
  })
}
