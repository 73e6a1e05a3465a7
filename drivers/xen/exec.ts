/**
 * How the Xen backend runs commands in the dom0: a tiny executor interface, so the same
 * backend runs inside the dom0 (the host agent: local processes) or from elsewhere over
 * SSH (tests, tools). Commands are argv arrays; the SSH executor quotes them for the shell.
 */
import { HostUnreachableError, RemoteCommandError } from '../../core/errors.ts'
import { commandOptions, localRunner, type CommandResult, type CommandRunner } from '../../core/exec.ts'
import type { SshConnection } from '../../core/ssh.ts'

/** stdout, stderr and the exit status (null when killed by a signal or, locally, the time limit). */
export type ExecOutcome = CommandResult

export interface XenExecutor {
  /** Where commands run (for messages), e.g. "local" or "ssh xen1". */
  readonly where: string
  /** Runs argv to completion; never rejects for a non-zero exit (look at `code`). Rejects with ENOENT-like errors only when argv[0] cannot be run at all. */
  run (argv: string[], opts?: { stdin?: string | Buffer, timeoutMs?: number, signal?: AbortSignal }): Promise<ExecOutcome>
}

/**
 * Runs argv through `runner`, every exit status resolving. A command that cannot be started
 * rejects with the system's error (ENOENT, EACCES: what the backend looks for); with
 * `timeoutAsStatus`, the time limit resolves with a null status (how the local executor
 * always answered).
 */
async function runLenient (runner: CommandRunner, argv: string[], opts: Parameters<XenExecutor['run']>[1] = {}, timeoutAsStatus = false): Promise<ExecOutcome> {
  try {
    return await runner.run(argv, commandOptions({ ...opts, input: opts.stdin, allowFailure: true }))
  } catch (err) {
    if (err instanceof RemoteCommandError && err.reason === 'start') throw err.cause ?? err
    if (err instanceof RemoteCommandError && err.reason === 'timeout' && timeoutAsStatus) return { stdout: '', stderr: err.stderr, code: null }
    throw err
  }
}

/** Runs commands on this machine (the host agent inside the dom0). */
export function localExecutor (): XenExecutor {
  const here = localRunner()
  return { where: 'local', run: async (argv, opts) => await runLenient(here, argv, opts, true) }
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
      return await Promise.race([dropped, runLenient(c, argv, opts)]).finally(() => clearInterval(timer))
    }
  }
}
