/**
 * How the Xen backend runs commands in the dom0: a tiny executor interface, so the same
 * backend runs inside the dom0 (the host agent: local processes) or from elsewhere over
 * SSH (tests, tools). Commands are argv arrays; the SSH executor quotes them for the shell.
 */
import { execFile } from 'node:child_process'
import { HostUnreachableError } from '../../core/errors.ts'
import type { SshConnection } from '../../core/ssh.ts'
import { shq } from './config.ts'

export interface ExecOutcome {
  stdout: string
  stderr: string
  /** Exit status; null when killed by a signal or the time limit. */
  code: number | null
}

export interface XenExecutor {
  /** Where commands run (for messages), e.g. "local" or "ssh xen1". */
  readonly where: string
  /** Runs argv to completion; never rejects for a non-zero exit (look at `code`). Rejects with ENOENT-like errors only when argv[0] cannot be run at all. */
  run (argv: string[], opts?: { stdin?: string | Buffer, timeoutMs?: number, signal?: AbortSignal }): Promise<ExecOutcome>
}

/** Runs commands on this machine (the host agent inside the dom0). */
export function localExecutor (): XenExecutor {
  return {
    where: 'local',
    run (argv, opts = {}) {
      const [cmd, ...args] = argv
      if (cmd === undefined) return Promise.reject(new Error('empty command'))
      return new Promise((resolve, reject) => {
        const child = execFile(cmd, args, { timeout: opts.timeoutMs ?? 0, maxBuffer: 64 * 1024 * 1024, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) }, (err, stdout, stderr) => {
          const e = err as (NodeJS.ErrnoException & { code?: string | number | null }) | null
          if (e !== null && typeof e.code === 'string' && e.code !== 'ABORT_ERR') { reject(e); return }
          if (e !== null && e.code === 'ABORT_ERR') { reject(e); return }
          resolve({ stdout: String(stdout), stderr: String(stderr), code: e === null ? 0 : (typeof e.code === 'number' ? e.code : null) })
        })
        if (opts.stdin !== undefined) child.stdin?.end(opts.stdin)
        else child.stdin?.end()
      })
    }
  }
}

/**
 * Runs commands in the dom0 over SSH. Given a function, it is asked for the connection before
 * every command (so a caller can reconnect after a dropped connection: a TCG dom0 under load
 * can miss SSH keepalives).
 */
export function sshExecutor (conn: SshConnection | (() => Promise<SshConnection>)): XenExecutor {
  const get = typeof conn === 'function' ? conn : async () => conn
  return {
    where: typeof conn === 'function' ? 'ssh' : `ssh ${conn.hostName}`,
    async run (argv, opts = {}) {
      const c = await get()
      // A connection that drops mid-command rejects (instead of leaving the command pending);
      // so does one that stops answering (its transport can die without ssh2 noticing: the
      // channel never opens). Such a connection is closed, so a provider function reconnects.
      let timer: NodeJS.Timeout | undefined
      const limit = Date.now() + (opts.timeoutMs ?? 60_000) + 15_000
      const dropped = new Promise<never>((_resolve, reject) => {
        timer = setInterval(() => {
          if (c.isClosed) reject(new HostUnreachableError(c.hostName, `connection closed during \`${argv.join(' ')}\``))
          else if (Date.now() > limit) { c.close(); reject(new HostUnreachableError(c.hostName, `no answer to \`${argv.join(' ')}\`; connection closed`)) }
        }, 500)
      })
      const r = await Promise.race([dropped, c.exec(argv.map(shq).join(' '), {
        allowFailure: true,
        ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
        ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        ...(opts.signal !== undefined ? { signal: opts.signal } : {})
      })]).finally(() => clearInterval(timer))
      return { stdout: r.stdout, stderr: r.stderr, code: r.code }
    }
  }
}
