/**
 * Starts and stops a `local` Xen host: a QEMU (TCG) machine running Debian's Xen with
 * the PV dom0 of images/xen-host, in an existing network namespace, its eth0 on a tap
 * there. Reachable over SSH like any host (through `ip netns exec <ns> socat`).
 * Argument building lives in xen-host-args.ts.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { SshEndpoint } from '../cloud.ts'
import { LocalDriverError, throwIfAborted } from '../../core/errors.ts'
import type { OperationOptions, ProgressPhase } from '../../core/progress.ts'
import { buildXenHostImage, type XenHostImage } from '../../images/xen-host/build.ts'
import { launchCpio, readyState, xenHostQemuArgs, type XenHostVmConfig } from './xen-host-args.ts'
import { isAlive, killPids, nsRun, run, sleep, sshBanner, startDaemon } from './sh.ts'

/** The Xen host did not come up (QEMU died, dom0 init reported a failure, or a timeout). */
export class XenHostBootError extends LocalDriverError {
  readonly consoleTail: string
  constructor (host: string, detail: string, consoleTail: string) {
    super(`Xen host ${host} failed to boot: ${detail}\n--- last console lines ---\n${consoleTail}`)
    this.consoleTail = consoleTail
  }
}

export interface StartXenHostOptions extends OperationOptions {
  prefix: string
  name: string
  /** Existing network namespace for the tap and the QEMU process. */
  ns: string
  /** Directory for this host's files (console log, keys, launch initrd); created. */
  dir: string
  /** dom0 address with prefix, e.g. 198.18.240.2/24. */
  address: string
  /**
   * Address (no prefix) given to the tap in `ns`, the dom0's gateway, e.g. 198.18.240.1.
   * Without `bridge`, the tap gets it; with `bridge`, it only becomes the dom0's default route.
   */
  tapAddress: string
  /** Existing bridge in `ns` to put the tap into (several Xen hosts on one segment) instead of addressing the tap. */
  bridge?: string
  /** Tap name in `ns` (must carry the prefix). Default `<prefix>xen0`. */
  tap?: string
  /** Controller's private key; `<path>.pub` is authorized for root on the dom0. */
  privateKeyPath: string
  image?: XenHostImage
  memoryMiB?: number
  dom0MemMiB?: number
  cpus?: number
  /** QEMU CPU model; 'max' gives Xen SVM + nested paging under TCG (HVM/PVH guests, log-dirty for their live migration). */
  cpuModel?: string
  /** Extra words for Xen's own command line. */
  xenExtra?: string[]
  /** Namespace from which the dom0's address is reachable (SSH proxy). Default `ns`. */
  reachNs?: string
  /** Until the dom0 prints its ready line and sshd answers. Default 240 s (TCG). */
  bootTimeoutMs?: number
}

export interface XenHost {
  name: string
  ns: string
  tap: string
  pid: number
  /** dom0 address without prefix. */
  ip: string
  ssh: SshEndpoint
  consoleLog: string
  /** Milliseconds from QEMU start to the dom0 ready line, and to the sshd banner. */
  timings: { readyMs: number, sshMs: number }
  /** Stops QEMU (TERM, then KILL) and removes the tap. Idempotent. */
  stop: () => Promise<void>
}

async function consoleTail (path: string, lines = 30): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return text.split(/\r?\n/).slice(-lines).join('\n')
}


/** How long a Xen machine gets by default to boot Xen and its dom0 under TCG (bootTimeoutMs). */
export const XEN_HOST_BOOT_MS = 240_000

export async function startXenHost (opts: StartXenHostOptions): Promise<XenHost> {
  const what = `Xen host ${opts.name}`
  const progress = (phase: ProgressPhase, message: string): void => opts.onProgress?.({ subject: `host ${opts.name}`, phase, message })
  throwIfAborted(opts.signal, what)
  const image = opts.image ?? await buildXenHostImage({ signal: opts.signal, onProgress: opts.onProgress })
  const tap = opts.tap ?? `${opts.prefix}xen0`
  const ip = opts.address.split('/')[0] ?? ''
  await mkdir(opts.dir, { recursive: true, mode: 0o700 })
  const consoleLog = join(opts.dir, 'console.log')
  const cfg: XenHostVmConfig = {
    name: opts.name,
    prefix: opts.prefix,
    xen: image.xen,
    kernel: image.kernel,
    initrd: join(opts.dir, 'initrd.img'),
    tap,
    address: opts.address,
    gateway: opts.tapAddress,
    consoleLog,
    memoryMiB: opts.memoryMiB,
    dom0MemMiB: opts.dom0MemMiB,
    cpus: opts.cpus,
    cpuModel: opts.cpuModel,
    ...(opts.xenExtra !== undefined ? { xenExtra: opts.xenExtra } : {})
  }
  const args = xenHostQemuArgs(cfg) // validates before anything is created

  progress('keys', 'host key and launch initramfs')
  const hostKeyPath = join(opts.dir, 'ssh_host_ed25519_key')
  await rm(hostKeyPath, { force: true })
  await rm(`${hostKeyPath}.pub`, { force: true })
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', opts.name, '-f', hostKeyPath])
  const hostKeyPub = await readFile(`${hostKeyPath}.pub`, 'utf8')
  const knownHosts = join(opts.dir, 'known_hosts')
  await writeFile(knownHosts, `${ip} ${hostKeyPub.trim()}\n`)
  const authorized = await readFile(`${opts.privateKeyPath}.pub`, 'utf8').catch(err => {
    throw new LocalDriverError(`${what}: cannot read public key ${opts.privateKeyPath}.pub`, err)
  })
  const extra = launchCpio({ hostKey: await readFile(hostKeyPath, 'utf8'), hostKeyPub, authorizedKeys: authorized })
  await writeFile(cfg.initrd, Buffer.concat([await readFile(image.initrd), extra]), { mode: 0o600 })
  await writeFile(consoleLog, '')

  progress('network', `tap ${tap} in ${opts.ns}`)
  await nsRun(opts.ns, ['ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
  let pid = 0
  const stop = async (): Promise<void> => {
    // TERM, up to 3 s, then KILL.
    if (pid > 0) await killPids([pid], 3000)
    await nsRun(opts.ns, ['ip', 'link', 'del', tap], { allowFailure: true })
  }
  try {
    if (opts.bridge !== undefined) await nsRun(opts.ns, ['ip', 'link', 'set', tap, 'master', opts.bridge])
    else await nsRun(opts.ns, ['ip', 'addr', 'add', `${opts.tapAddress}/${opts.address.split('/')[1] ?? '24'}`, 'dev', tap])
    await nsRun(opts.ns, ['ip', 'link', 'set', tap, 'up'])

    progress('boot', `QEMU (TCG) with Xen ${image.xenVersion} and dom0 ${image.kernelVersion}`)
    const started = Date.now()
    pid = startDaemon(['ip', 'netns', 'exec', opts.ns, 'qemu-system-x86_64', ...args], join(opts.dir, 'qemu.log'))
    const deadline = started + (opts.bootTimeoutMs ?? XEN_HOST_BOOT_MS)
    let readyMs = 0
    for (;;) {
      throwIfAborted(opts.signal, what)
      const state = readyState(await readFile(consoleLog, 'utf8').catch(() => ''), opts.name)
      if (state?.ready === true) { readyMs = Date.now() - started; break }
      if (state?.ready === false) throw new XenHostBootError(opts.name, state.detail, await consoleTail(consoleLog))
      if (!isAlive(pid)) {
        const qemuLog = (await readFile(join(opts.dir, 'qemu.log'), 'utf8').catch(() => '')).trim()
        throw new XenHostBootError(opts.name, `QEMU exited${qemuLog !== '' ? `: ${qemuLog}` : ''}`, await consoleTail(consoleLog))
      }
      if (Date.now() > deadline) throw new XenHostBootError(opts.name, `no ready line after ${opts.bootTimeoutMs ?? XEN_HOST_BOOT_MS} ms`, await consoleTail(consoleLog))
      await sleep(250)
    }
    progress('ssh', `waiting for sshd on ${ip}`)
    const proxyCommand = ['ip', 'netns', 'exec', opts.reachNs ?? opts.ns, 'socat', '-', `TCP:${ip}:22`]
    while (!await sshBanner(proxyCommand, 3000)) {
      throwIfAborted(opts.signal, what)
      if (Date.now() > deadline) throw new XenHostBootError(opts.name, `sshd does not answer on ${ip}:22`, await consoleTail(consoleLog))
      await sleep(250)
    }
    const sshMs = Date.now() - started
    progress('ready', `up in ${(sshMs / 1000).toFixed(1)} s`)
    return {
      name: opts.name,
      ns: opts.ns,
      tap,
      pid,
      ip,
      ssh: { host: ip, port: 22, username: 'root', privateKeyPath: opts.privateKeyPath, hostKeyPath: knownHosts, proxyCommand },
      consoleLog,
      timings: { readyMs, sshMs },
      stop
    }
  } catch (err) {
    await stop()
    throw err
  }
}
