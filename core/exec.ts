/**
 * The one way to run a command, on this machine or on a host: a `CommandRunner` runs a
 * shell command line (a string, for `sh`) or an argv (no shell interpretation), feeds it
 * its input and collects its output and exit status. Two implementations: `localRunner`
 * (a child process, optionally inside a network namespace through `ip netns exec`) and
 * `SshConnection` (core/ssh.ts: an exec channel). Both settle through `collectCommand`, so
 * exit statuses, the time limit, cancelling and the errors read the same everywhere.
 */
import { spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { CancelledError, RemoteCommandError, throwIfAborted } from './errors.ts'

export interface CommandResult {
  stdout: string
  stderr: string
  /** Exit status; null when the command ended without one (killed by a signal). */
  code: number | null
}

export interface CommandOptions {
  /** Written to the command's stdin, then EOF (EOF at once without it). */
  input?: string | Buffer
  /** Aborting kills the command and rejects with CancelledError. */
  signal?: AbortSignal
  /** Past this, the command is killed and the run rejects with RemoteCommandError (reason 'timeout'). */
  timeoutMs?: number
  /**
   * Exit statuses that resolve (default [0]); any other rejects with RemoteCommandError.
   * 'any': every ending resolves, a missing status too (the time limit, cancelling and a
   * command that cannot be started still reject).
   */
  okStatuses?: readonly number[] | 'any'
}

/** CommandOptions from the callers' older style, where `allowFailure` lets every exit status resolve. */
export function commandOptions (o: { input?: string | Buffer | undefined, signal?: AbortSignal | undefined, timeoutMs?: number | undefined, allowFailure?: boolean | undefined }): CommandOptions {
  return {
    ...(o.input !== undefined ? { input: o.input } : {}),
    ...(o.signal !== undefined ? { signal: o.signal } : {}),
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.allowFailure === true ? { okStatuses: 'any' as const } : {})
  }
}

/** Runs commands in one place (this machine, a namespace of it, a host over SSH). */
export interface CommandRunner {
  /** Where commands run, for messages: a host name or "local". */
  readonly host: string
  /** Runs a shell command line (string) or an argv (array, no shell). */
  run: (command: string | readonly string[], opts?: CommandOptions) => Promise<CommandResult>
}

/** How a command ended as its transport saw it. */
export interface CommandEnd {
  code: number | null
  /** Why there is no usable status (killed, connection gone), put before the output in the error. */
  why?: string
}

/** A started command as collectCommand sees it: a child process or an SSH exec channel. */
export interface StartedCommand {
  stdout: Readable
  stderr: Readable
  stdin: Writable
  /** Stops the command (on timeout or cancel). */
  kill: () => void
  /** Settles once the command is over and its output complete; rejects when it did not run at all. */
  end: Promise<CommandEnd>
  /** Reads the status out of the output, when the transport puts it there (the SSH exit status line). */
  finish?: (stdout: string, end: CommandEnd) => { stdout: string, end: CommandEnd }
}

function accepted (code: number | null, ok: CommandOptions['okStatuses']): boolean {
  if (ok === 'any') return true
  return code !== null && (ok ?? [0]).includes(code)
}

/**
 * Feeds a started command its input, collects its output, and settles: the result, or
 * RemoteCommandError (status not accepted, time limit: the command is killed) or
 * CancelledError (the signal: the command is killed).
 */
export async function collectCommand (what: { host: string, command: string }, p: StartedCommand, opts: CommandOptions = {}): Promise<CommandResult> {
  const out: Buffer[] = []
  const err: Buffer[] = []
  p.stdout.on('data', (d: Buffer) => { out.push(d) })
  p.stderr.on('data', (d: Buffer) => { err.push(d) })
  const text = (chunks: Buffer[]): string => Buffer.concat(chunks).toString()
  return await new Promise<CommandResult>((resolve, reject) => {
    let settled = false
    let timer: NodeJS.Timeout | undefined
    const settle = (fn: () => void): void => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      opts.signal?.removeEventListener('abort', onAbort)
      fn()
    }
    const onAbort = (): void => { settle(() => { p.kill(); reject(new CancelledError(`\`${what.command}\` on ${what.host}`)) }) }
    if (opts.timeoutMs !== undefined) {
      const ms = opts.timeoutMs
      timer = setTimeout(() => { settle(() => { p.kill(); reject(new RemoteCommandError(what.host, what.command, null, `timed out after ${ms} ms\n${text(err)}`, { reason: 'timeout' })) }) }, ms)
    }
    if (opts.signal?.aborted === true) onAbort()
    else opts.signal?.addEventListener('abort', onAbort, { once: true })
    p.end.then(end => {
      settle(() => {
        const r = p.finish?.(text(out), end) ?? { stdout: text(out), end }
        const stderr = text(err)
        const { code, why } = r.end
        if (!accepted(code, opts.okStatuses)) reject(new RemoteCommandError(what.host, what.command, code, (why ?? '') + (stderr !== '' ? stderr : r.stdout)))
        else resolve({ stdout: r.stdout, stderr, code })
      })
    }, (e: unknown) => { settle(() => { reject(e) }) })
    p.stdin.on('error', () => { /* a command that does not read its input: seen through its exit */ })
    p.stdin.end(opts.input ?? '')
  })
}

/** Quotes a string for a POSIX shell. */
export function shq (s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export interface LocalRunnerOptions {
  /** Name for messages (default "local"). */
  host?: string
  /** Run every command inside this network namespace (`ip netns exec`). */
  netns?: string
}

/**
 * Commands on this machine as child processes: a string through `sh -c`, an argv as it
 * is; inside `netns` when given. The time limit and cancelling send SIGTERM.
 */
export function localRunner (o: LocalRunnerOptions = {}): CommandRunner {
  const host = o.host ?? 'local'
  const prefix = o.netns !== undefined ? ['ip', 'netns', 'exec', o.netns] : []
  return {
    host,
    async run (command, opts = {}) {
      const argv = [...prefix, ...(typeof command === 'string' ? ['sh', '-c', command] : command)]
      const shown = [...prefix, ...(typeof command === 'string' ? [command] : command)].join(' ')
      const [cmd, ...args] = argv
      if (cmd === undefined) throw new RemoteCommandError(host, shown, null, 'empty command', { reason: 'start' })
      throwIfAborted(opts.signal, `\`${shown}\` on ${host}`)
      const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
      const end = new Promise<CommandEnd>((resolve, reject) => {
        child.on('error', e => { reject(new RemoteCommandError(host, shown, null, e.message, { reason: 'start', cause: e })) })
        child.on('close', (code, sig) => { resolve(code === null && sig !== null ? { code, why: `(killed by ${sig}) ` } : { code }) })
      })
      return await collectCommand({ host, command: shown }, {
        stdout: child.stdout,
        stderr: child.stderr,
        stdin: child.stdin,
        kill: () => { child.kill('SIGTERM') },
        end
      }, opts)
    }
  }
}
