/**
 * Puts the VirtualWire endpoint manager on a host (over SSH only): its bundle plus the
 * fuse-native addon it loads, started detached from an SSH session so its FUSE mount is
 * visible to later SSH sessions (the controller writes the endpoint interface that way).
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createHash } from 'node:crypto'
import { ENDPOINT_DAEMON_MODULES, NODE_MODULES, endpointDaemonBundle } from '../agent/bundle.ts'
import { BootstrapError } from '../../core/errors.ts'
import { shq, type SshConnection } from '../../core/ssh.ts'
import { daemonStartScript } from './daemon-script.ts'
import type { OperationOptions } from '../../core/progress.ts'

const run = promisify(execFile)

/** MTU the endpoint bridges (and the guest NICs wired to them) use: a 1500-byte underlay less VXLAN's 50. */
export const VW_MTU = 1450

export interface EndpointManagerOnHost {
  /** Where the endpoint interface (`create`, `destroy`, `<N>`, `last_error`) is served. */
  root: string
}

export function endpointRoot (blanketDir: string): string {
  return `${blanketDir}/vw`
}

let modulesTar: Promise<{ data: Buffer, hash: string }> | undefined

async function modulesTarball (): Promise<{ data: Buffer, hash: string }> {
  modulesTar ??= (async () => {
    const { stdout } = await run('tar', ['-C', NODE_MODULES, '-czf', '-', '--sort=name', '--mtime=@0', '--owner=0', '--group=0', ...ENDPOINT_DAEMON_MODULES], { encoding: 'buffer', maxBuffer: 64 << 20 })
    return { data: stdout, hash: createHash('sha256').update(stdout).digest('hex').slice(0, 12) }
  })()
  return await modulesTar
}

export async function ensureEndpointManager (ssh: SshConnection, blanketDir: string, prefix: string, opts: OperationOptions = {}): Promise<EndpointManagerOnHost> {
  const say = (message: string): void => opts.onProgress?.({ subject: `host ${ssh.hostName}`, phase: 'virtualwire', message })
  const d = shq(blanketDir)
  const root = endpointRoot(blanketDir)
  const bundle = await endpointDaemonBundle()
  const mods = await modulesTarball()
  const have = (await ssh.exec(`cat ${d}/vw-endpointd.build ${d}/node_modules/.sc-modules 2>/dev/null`, { allowFailure: true })).stdout.split('\n')
  if (have[1]?.trim() !== mods.hash) {
    say('installing the endpoint manager\'s FUSE addon')
    await ssh.exec(`mkdir -p ${d}/node_modules && tar -C ${d}/node_modules -xzf - && echo ${mods.hash} > ${d}/node_modules/.sc-modules`, { stdin: mods.data })
  }
  if (have[0]?.trim() !== bundle.hash) await ssh.writeFile(`${blanketDir}/vw-endpointd.mjs`, bundle.code)
  const running = (await ssh.exec(`p=$(cat ${d}/vw-endpoints.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null && test -e ${shq(root)}/create && echo yes`, { allowFailure: true })).stdout.trim() === 'yes'
  if (running && have[0]?.trim() === bundle.hash) return { root }
  say(running ? 'upgrading the endpoint manager' : 'starting the endpoint manager')
  // An older manager is stopped first (kernel devices stay: connectors keep forwarding meanwhile).
  const script = daemonStartScript({
    dir: blanketDir,
    pidFile: 'vw-endpoints.pid',
    prepare: [`echo ${bundle.hash} > vw-endpointd.build`, `mkdir -p ${shq(root)}`],
    command: `node vw-endpointd.mjs --root ${shq(root)} --state ${d}/vw-endpoints.json --prefix ${shq(prefix)} --mtu ${VW_MTU}`,
    log: 'vw-endpointd.log',
    ready: `test -e ${shq(root)}/create`,
    what: 'endpoint manager'
  })
  try {
    await ssh.exec(script)
  } catch (err) {
    throw new BootstrapError(ssh.hostName, `VirtualWire endpoint manager: ${(err as Error).message}`, err)
  }
  return { root }
}
