/**
 * Runs the host bootstrap (cloud-init.ts) over SSH: the same script EC2 runs as
 * user-data, for servers that are not launched by supercloud (private hosts).
 */
import type { SshConnection } from '../../core/ssh.ts'
import { BootstrapError } from '../../core/errors.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { HOST_REPORT_FILE, hostBootstrapScript, parseHostReport, sq, type HostBootstrapOptions, type HostReport } from './cloud-init.ts'

export interface RunHostBootstrapOptions extends OperationOptions {
  /** Run through `sudo -n` (login user is not root). */
  sudo?: boolean
  /** SC_HOST_ROOT for the script (tests whose hosts share one filesystem). */
  hostRoot?: string
}

/** Runs the bootstrap script on the host and returns its report. Idempotent. */
export async function runHostBootstrap (conn: SshConnection, o: HostBootstrapOptions, opts: RunHostBootstrapOptions = {}): Promise<HostReport> {
  const script = hostBootstrapScript(o)
  const env = opts.hostRoot !== undefined ? `SC_HOST_ROOT=${sq(opts.hostRoot)} ` : ''
  const command = opts.sudo === true ? `sudo -n env ${env}sh -s` : `${env}sh -s`
  opts.onProgress?.({ subject: `host ${o.host}`, phase: 'host-image', message: 'running the host bootstrap' })
  const r = await conn.exec(command, { stdin: script, allowFailure: true, timeoutMs: 30 * 60000, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
  if (r.code !== 0) throw new BootstrapError(o.host, `host bootstrap exited ${r.code ?? 'by signal'}: ${(r.stderr + r.stdout).trim().split('\n').slice(-5).join(' | ')}`)
  const cat = await conn.exec(`cat ${sq(`${o.stateDir}/${HOST_REPORT_FILE}`)}`, { allowFailure: true })
  const report = parseHostReport(cat.stdout)
  if (report === undefined) throw new BootstrapError(o.host, `host bootstrap finished but ${o.stateDir}/${HOST_REPORT_FILE} is missing or invalid`)
  return report
}
