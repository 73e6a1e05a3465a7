/**
 * A Xen guest's console as a unix socket in its runDir (serial.sock): a socat listener started
 * with the domain, one console.sh per connection (socat on the domain's console pty). Used by
 * the Xen backend (backend.ts) for a guest it starts and for one that arrives by migration.
 */
import type { ExecOutcome } from './exec.ts'
import { shq } from './config.ts'
import { XenGuestStartError } from './errors.ts'
import { xenRunPaths } from './paths.ts'

/** Runs a shell script in the dom0 with positional arguments (the backend's executor). */
export type DomShell = (script: string, args?: string[], opts?: { stdin?: string | Buffer, timeoutMs?: number }) => Promise<ExecOutcome>

export class XenConsole {
  constructor (private readonly sh: DomShell, private readonly xl: string) {}

  /**
   * socat listening on serial.sock; each connection runs console.sh, which opens the domain's
   * console pty (xenstore console/tty, what `xl console` opens) with socat. Not `xl console`
   * itself: it takes a per-domain lock and can outlive a closed connection, refusing the next.
   */
  async start (name: string, runDir: string): Promise<void> {
    const p = xenRunPaths(runDir)
    const script = [
      '#!/bin/sh',
      '# Guest console of one connection to serial.sock (drivers/xen/console.ts).',
      `domid=$(${shq(this.xl)} domid ${shq(name)}) || exit 1`,
      'tty=$(xenstore-read "/local/domain/$domid/console/tty") || exit 1',
      'exec socat - "FILE:$tty,rawer"',
      ''
    ].join('\n')
    const r = await this.sh(
      'cat > "$4" && chmod 755 "$4" && rm -f "$1"; setsid socat "UNIX-LISTEN:$1,fork,mode=600" "EXEC:$4" </dev/null >"$3" 2>&1 & echo $! > "$2"; ' +
      'i=0; while [ ! -S "$1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; [ -S "$1" ]',
      [p.serial, p.consolePid, p.consoleSocatLog, p.consoleScript], { stdin: script })
    if (r.code !== 0) throw new XenGuestStartError(name, `console socket ${p.serial} did not appear (socat)`, r.stderr)
  }

  /** True when the console listener of runDir runs (its socket exists, its pid is a socat on it). */
  async running (runDir: string): Promise<boolean> {
    const p = xenRunPaths(runDir)
    const r = await this.sh('[ -S "$1" ] && pid=$(cat "$2" 2>/dev/null) && [ -n "$pid" ] && grep -q "$1" "/proc/$pid/cmdline" 2>/dev/null', [p.serial, p.consolePid])
    return r.code === 0
  }

  /** Kills the console listener of runDir (its process group: the listener and its per-connection children). */
  async stop (runDir: string): Promise<void> {
    const p = xenRunPaths(runDir)
    await this.sh(
      'pid=$(cat "$1" 2>/dev/null); if [ -n "$pid" ] && grep -q "$2" "/proc/$pid/cmdline" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; ' +
      'i=0; while [ -d "/proc/$pid" ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL -- "-$pid" 2>/dev/null; fi; rm -f "$1" "$2"',
      [p.consolePid, p.serial])
  }
}
