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
}

/** Stop the old instance (wait up to 5 s), start the new one detached, wait up to 10 s for `ready`. */
export function daemonStartScript (o: DaemonStart): string {
  return [
    `cd ${shq(o.dir)}`,
    `p=$(cat ${o.pidFile} 2>/dev/null); if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill "$p"; for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; fi`,
    ...o.prepare,
    `setsid nohup ${o.command} </dev/null >>${o.log} 2>&1 &`,
    `for i in $(seq 100); do ${o.ready} && exit 0; sleep 0.1; done`,
    `echo "${o.what} did not start; last log lines:" >&2; tail -n 20 ${o.log} >&2; exit 1`
  ].join('\n')
}
