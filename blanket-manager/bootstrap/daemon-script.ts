/** The shell script that (re)starts one of the Blanket layer's daemons on a host, over SSH. */
import { shq } from '../../core/ssh.ts'

export interface DaemonStart {
  /** Directory the daemon's files live in (cwd of the script). */
  dir: string
  /** Pidfile of a running instance, relative to `dir`; it is stopped first. */
  pidFile: string
  /** Commands run after the old instance stopped and before the new one starts. */
  prepare: string[]
  /** The daemon's command line (shell-quoted), started detached with its output appended to `log`. */
  command: string
  log: string
  /** A shell test that succeeds once the daemon serves. */
  ready: string
  /** What it is, for the error message. */
  what: string
  /**
   * Seconds of wall time to wait for `ready` while the daemon lives (default 90). A host that is
   * itself emulated (a Xen dom0 under TCG) on a busy machine took over 10 s to start Node.
   */
  readySeconds?: number
}

/**
 * Stop the old instance (wait up to 5 s), start the new one detached, then wait for `ready` by the
 * clock (not by a count of sleeps, which stretch on a loaded host) for as long as the daemon lives:
 * one that exits is reported at once with its log, one that lives but never serves after `readySeconds`.
 */
export function daemonStartScript (o: DaemonStart): string {
  const tail = `echo "last log lines:" >&2; tail -n 20 ${o.log} >&2; exit 1`
  return [
    `cd ${shq(o.dir)}`,
    `p=$(cat ${o.pidFile} 2>/dev/null); if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill "$p"; for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; fi`,
    ...o.prepare,
    `setsid nohup ${o.command} </dev/null >>${o.log} 2>&1 &`,
    'pid=$!',
    `end=$(( $(date +%s) + ${o.readySeconds ?? 90} ))`,
    'while :; do',
    `  if ${o.ready}; then exit 0; fi`,
    `  if ! kill -0 "$pid" 2>/dev/null; then echo "${o.what} exited before it served" >&2; ${tail}; fi`,
    `  if [ "$(date +%s)" -ge "$end" ]; then echo "${o.what} did not serve within ${o.readySeconds ?? 90} s" >&2; ${tail}; fi`,
    '  sleep 0.1',
    'done'
  ].join('\n')
}
