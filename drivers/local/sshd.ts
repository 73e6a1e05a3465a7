/** The sshd of a local host (QEMU flavour): its keys, config and process, and waiting for it to answer. */
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext, HostRecord } from '../cloud.ts'
import type { HostSpec } from '../../core/spec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { LocalDriverError, throwIfAborted } from '../../core/errors.ts'
import { sshdConfig } from './sshd-config.ts'
import { nsPids, pidInNs } from './netns.ts'
import { isAlive, killPids, nsRun, processCmdline, readPidFile, run, sleep, sshBanner } from './sh.ts'
import { progress, writeIfChanged } from './files.ts'
import type { LocalHostData } from './host.ts'

const SSHD_READY_TIMEOUT_MS = 15000

/** Pids of the sshd listener(s) of a host (its per-connection children excluded). */
export async function hostSshdPids (record: HostRecord): Promise<number[]> {
  const d = record.driverData as unknown as LocalHostData
  const out: number[] = []
  if (d.xen !== undefined) return out
  for (const pid of await nsPids(d.ns)) {
    const cmd = await processCmdline(pid)
    if (cmd !== undefined && cmd.includes(d.sshdConfig) && !/\s-R(\s|$)/.test(cmd)) out.push(pid)
  }
  return out
}

export async function ensureSshd (ctx: DriverContext, spec: HostSpec, ns: string, address: string, sshdDir: string, opts?: OperationOptions): Promise<{ knownHosts: string, config: string, pidFile: string }> {
  await mkdir(sshdDir, { recursive: true, mode: 0o700 })
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
  const hostKey = join(sshdDir, 'ssh_host_ed25519_key')
  if (!await stat(hostKey).then(() => true, () => false) || !await stat(`${hostKey}.pub`).then(() => true, () => false)) {
    await rm(hostKey, { force: true })
    await rm(`${hostKey}.pub`, { force: true })
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', `${spec.name}@supercloud`, '-f', hostKey])
  }
  const authorized = join(sshdDir, 'authorized_keys')
  await copyFile(`${ctx.keyPath}.pub`, authorized)
  const pub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(/\s+/)
  const knownHosts = join(sshdDir, 'known_hosts')
  await writeIfChanged(knownHosts, `${address} ${pub[0] ?? ''} ${pub[1] ?? ''}\n`)
  // The config file name carries the namespace name (and so the prefix) into sshd's command line.
  const config = join(sshdDir, `sshd-${ns}.conf`)
  const pidFile = join(sshdDir, 'sshd.pid')
  const log = join(sshdDir, 'sshd.log')
  const changed = await writeIfChanged(config, sshdConfig({ address, hostKeyPath: hostKey, pidFile, authorizedKeysFile: authorized }))
  const pid = await readPidFile(pidFile)
  if (!changed && pid !== undefined && await pidInNs(pid, ns)) return { knownHosts, config, pidFile }
  // Stale or reconfigured: stop every sshd of this host, then start one.
  const stale: number[] = []
  for (const p of await nsPids(ns)) if ((await processCmdline(p))?.includes(config) === true) stale.push(p)
  if (pid !== undefined && isAlive(pid) && await pidInNs(pid, ns)) stale.push(pid)
  await killPids(stale)
  await rm(pidFile, { force: true })
  progress(opts, `host ${spec.name}`, 'sshd', `starting sshd on ${address}:22`)
  try {
    await nsRun(ns, ['/usr/sbin/sshd', '-f', config, '-E', log])
  } catch (err) {
    const tail = (await readFile(log, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ')
    throw new LocalDriverError(`sshd of host ${spec.name} did not start: ${tail}`, err)
  }
  return { knownHosts, config, pidFile }
}

/** Waits until the host's sshd sends its banner through `proxyCommand`. */
export async function waitForSshd (host: string, address: string, proxyCommand: string[], sshdDir: string, what: string, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + SSHD_READY_TIMEOUT_MS
  while (!await sshBanner(proxyCommand, 3000)) {
    throwIfAborted(signal, what)
    if (Date.now() > deadline) {
      const log = (await readFile(join(sshdDir, 'sshd.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-5).join(' | ')
      throw new LocalDriverError(`sshd of host ${host} does not answer on ${address}:22 after ${SSHD_READY_TIMEOUT_MS} ms: ${log}`)
    }
    await sleep(100)
  }
}
