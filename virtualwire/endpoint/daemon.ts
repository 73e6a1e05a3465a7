/**
 * The endpoint manager process of one host:
 *
 *   node --import tsx virtualwire/endpoint/daemon.ts --root <dir> --state <file> --prefix <p> [--mtu 1450] [--no-fast-path]
 *
 * Loads the state file, reconciles the kernel with it, serves the endpoint interface at
 * <root> (FUSE), writes its pid next to the state file (`pidFileFor(state)`), logs to stderr.
 * SIGTERM/SIGINT unmount and exit; kernel devices stay, so connectors keep forwarding while
 * the manager restarts. The FUSE mount is visible in the daemon's mount namespace: start it in
 * the namespace of the shells that will use it (see docs/virtualwire-endpoints.md).
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { fileURLToPath } from 'node:url'
import { SupercloudError } from '../../core/errors.ts'
import { projectPath } from '../../core/root.ts'
import { mountEndpointFs } from './fs.ts'
import { fastPathUnsupported, tcVersion } from './kernel.ts'
import { DEFAULT_ENDPOINT_MTU, EndpointManager, type EndpointLog } from './manager.ts'

export interface EndpointManagerProcessOptions {
  /** Directory where the interface is mounted. */
  root: string
  /** JSON state file; the pidfile goes next to it. */
  statePath: string
  prefix: string
  mtu?: number
  log?: EndpointLog
  /** Connector fast path (default true; `--no-fast-path`). */
  fastPath?: boolean
}

export interface RunningEndpointManager {
  manager: EndpointManager
  root: string
  pidFile: string
  /** Unmounts the interface and removes the pidfile; kernel devices stay. */
  stop (): Promise<void>
}

/** A live endpoint manager already serves this state file. */
export class EndpointManagerRunningError extends SupercloudError {
  constructor (message: string) {
    super('SC_VW_ENDPOINT_RUNNING', message)
  }
}

/** Pidfile of the endpoint manager using `statePath`: same path, extension `.pid`. */
export function pidFileFor (statePath: string): string {
  return statePath.replace(/\.json$/, '') + '.pid'
}

/** argv that starts the endpoint manager (`script`: path of this file, or of its bundle). */
export function endpointDaemonArgv (o: { script: string, root: string, statePath: string, prefix: string, mtu?: number, node?: string, tsx?: boolean, fastPath?: boolean }): string[] {
  return [
    o.node ?? process.execPath, ...(o.tsx === false ? [] : ['--import', 'tsx']), o.script,
    '--root', o.root, '--state', o.statePath, '--prefix', o.prefix,
    ...(o.mtu !== undefined ? ['--mtu', String(o.mtu)] : []),
    ...(o.fastPath === false ? ['--no-fast-path'] : [])
  ]
}

/** Path of this file in the checkout (for `endpointDaemonArgv` when running from the source tree). */
export function endpointDaemonScript (): string {
  return projectPath('virtualwire', 'endpoint', 'daemon.ts')
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}

/** Starts an endpoint manager in this process. */
export async function startEndpointManager (opts: EndpointManagerProcessOptions): Promise<RunningEndpointManager> {
  const log = opts.log ?? (() => {})
  const pidFile = pidFileFor(opts.statePath)
  const old = Number.parseInt((await readFile(pidFile, 'utf8').catch(() => '')).trim(), 10)
  if (Number.isInteger(old) && old > 1 && old !== process.pid && alive(old)) {
    const cmd = (await readFile(`/proc/${old}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ')
    if (cmd.includes(opts.statePath)) throw new EndpointManagerRunningError(`endpoint manager ${old} already serves ${opts.statePath}`)
  }
  // The fast path only where tc can do it: elsewhere connectors keep their bridge, and no link
  // watch or periodic resync runs for steps that would all fail (a TCG dom0 paid ~3% of its CPU).
  let fastPath = opts.fastPath ?? true
  if (fastPath) {
    const why = fastPathUnsupported(await tcVersion())
    if (why !== undefined) {
      log('info', `fast path off: ${why}`)
      fastPath = false
    }
  }
  const manager = await EndpointManager.open({ prefix: opts.prefix, statePath: opts.statePath, mtu: opts.mtu ?? DEFAULT_ENDPOINT_MTU, log, fastPath })
  const fs = await mountEndpointFs(manager, opts.root, log)
  await writeFile(pidFile, `${process.pid}\n`)
  let stopped: Promise<void> | undefined
  return {
    manager,
    root: fs.root,
    pidFile,
    stop: async () => {
      stopped ??= (async () => {
        manager.close()
        await fs.unmount()
        const cur = (await readFile(pidFile, 'utf8').catch(() => '')).trim()
        if (cur === String(process.pid)) await rm(pidFile, { force: true })
      })()
      await stopped
    }
  }
}

function stderrLog (level: string, msg: string): void {
  process.stderr.write(`${new Date().toISOString()} ${level} ${msg}\n`)
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: { root: { type: 'string' }, state: { type: 'string' }, prefix: { type: 'string' }, mtu: { type: 'string' }, 'no-fast-path': { type: 'boolean' } },
    strict: true
  })
  if (values.root === undefined || values.state === undefined || values.prefix === undefined) {
    process.stderr.write('usage: daemon.ts --root DIR --state FILE --prefix PREFIX [--mtu 1450] [--no-fast-path]\n')
    process.exit(2)
  }
  const mtu = values.mtu !== undefined ? Number(values.mtu) : DEFAULT_ENDPOINT_MTU
  const running = await startEndpointManager({ root: values.root, statePath: values.state, prefix: values.prefix, mtu, log: stderrLog, fastPath: values['no-fast-path'] !== true })
  stderrLog('info', `endpoint manager ${process.pid} serving ${running.root} (state ${values.state})`)
  const bye = (sig: string): void => {
    stderrLog('info', `${sig}: unmounting; kernel devices stay`)
    running.stop().then(() => process.exit(0), err => { stderrLog('error', `stop failed: ${(err as Error).message}`); process.exit(1) })
  }
  process.on('SIGTERM', () => { bye('SIGTERM') })
  process.on('SIGINT', () => { bye('SIGINT') })
}

/** Defined (true) by the CLI's bundle (scripts/cli-bundle.sh): there this file is one module of the CLI, never the program. */
declare const SUPERCLOUD_CLI_BUNDLE: boolean | undefined

// The program when node started this file: from the sources, or as the daemon's own bundle on a host.
if (typeof SUPERCLOUD_CLI_BUNDLE === 'undefined' && process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch(err => {
    process.stderr.write(`endpoint manager failed: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
