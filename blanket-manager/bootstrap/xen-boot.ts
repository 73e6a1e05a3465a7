/**
 * Host bootstrap to Xen on a real server (issue #6): install Xen, try it for one boot with
 * grub-reboot, and make it the default with grub-set-default only once the host came back
 * under Xen and the caller's agent answered. Anything else leaves the old default in place,
 * so a failed boot, a reset or a power cycle lands on the previous kernel. The shell that
 * runs on the host is drivers/host-bootstrap/xen-boot.sh; decisions are in xen-boot-plan.ts.
 */
import { readFile } from 'node:fs/promises'
import { projectPath } from '../../core/root.ts'
import type { SshConnection } from '../../core/ssh.ts'
import { shq } from '../../core/ssh.ts'
import type { OperationOptions } from '../../core/progress.ts'
import { BootstrapError, CancelledError, HostUnreachableError, XenBootFallbackError, XenUnsupportedError, throwIfAborted } from '../../core/errors.ts'
import { assessTrialBoot, parseBootStatus, stepFraction, type XenBootStatus, type XenBootStep } from './xen-boot-plan.ts'
import { fallbackEntry, findXenEntry, grubDefaultSetting, parseGrubMenu, resolveGrubRef, SAVED_ENTRY } from './grub-menu.ts'
import { parseHostFacts, parseKeyValues, xenCapability, type XenHostFacts } from './xen-host-facts.ts'

export const XEN_BOOT_SCRIPT = projectPath('drivers', 'host-bootstrap', 'xen-boot.sh')

/** Where things are on the host. Defaults are the real paths; tests use temporary ones. */
export interface XenBootLayout {
  bootDir: string
  etcDir: string
  /** The script is copied here and the trial state kept here. */
  stateDir: string
  xenDir: string
  bootIdFile: string
  xl: string
  mkconfig: string
  rebootCommand: string
}

export const DEFAULT_XEN_BOOT_LAYOUT: XenBootLayout = {
  bootDir: '/boot',
  etcDir: '/etc',
  stateDir: '/var/lib/supercloud/xen-boot',
  xenDir: '/proc/xen',
  bootIdFile: '/proc/sys/kernel/random/boot_id',
  xl: 'xl',
  mkconfig: 'grub-mkconfig',
  rebootCommand: 'systemctl reboot'
}

export interface XenBootOptions extends OperationOptions {
  /** Starts the host agent on the host that came back under Xen and checks it answers; throw if not. */
  confirmAgent: (conn: SshConnection) => Promise<void>
  /** How long to wait for SSH with a new boot id after the reboot (default 20 min: EC2 *.metal). */
  rebootTimeoutMs?: number
  /** Pause between reconnection attempts (default 5 s). */
  reconnectIntervalMs?: number
  /** A boot under Xen not confirmed within this many seconds reboots into the old default (default 1800). */
  guardSeconds?: number
  /** apt-get install the packages (default true). */
  install?: boolean
  /** Timeout of the install step (default 15 min). */
  installTimeoutMs?: number
  layout?: Partial<XenBootLayout>
  /**
   * Merged over the facts gathered on the host before the capability check. For tests (the
   * development machine is a container without GRUB); an operator should not need it.
   */
  factsOverride?: Partial<XenHostFacts>
}

export interface XenBootResult {
  host: string
  outcome: 'booted-into-xen' | 'already-xen'
  /** `xl info` xen_version. */
  xenVersion: string
  /** The GRUB entry that is now the default (booted-into-xen). */
  xenEntry?: string
  /** The entry the host fell back to had Xen failed. */
  fallbackEntry?: string
  warnings: string[]
  /** A live connection to the host as it runs now (the one given to confirmAgent). */
  conn: SshConnection
}

async function sleep (ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  throwIfAborted(signal, what)
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(new CancelledError(what)) }
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Runs the whole plan on one host. Throws XenUnsupportedError, XenBootFallbackError, HostUnreachableError, BootstrapError, CancelledError. */
export async function bootHostIntoXen (host: string, connect: () => Promise<SshConnection>, opts: XenBootOptions): Promise<XenBootResult> {
  const { signal } = opts
  const L: XenBootLayout = { ...DEFAULT_XEN_BOOT_LAYOUT, ...opts.layout }
  const what = `Xen bootstrap of host ${host}`
  const progress = (step: XenBootStep, message: string): void => {
    opts.onProgress?.({ subject: `host ${host}`, phase: `xen-${step}`, message, fraction: stepFraction(step) })
  }
  const script = `${L.stateDir}/xen-boot.sh`
  const layoutArgs = [
    '--boot', L.bootDir, '--etc', L.etcDir, '--state', L.stateDir, '--xen-dir', L.xenDir,
    '--boot-id-file', L.bootIdFile, '--xl', L.xl, '--mkconfig', L.mkconfig, '--reboot-cmd', L.rebootCommand
  ].map(shq).join(' ')
  const run = async (c: SshConnection, args: string[], timeoutMs = 120_000): Promise<string> => {
    throwIfAborted(signal, what)
    const r = await c.exec(`sh ${shq(script)} ${layoutArgs} ${args.map(shq).join(' ')}`, { signal, timeoutMs })
    return r.stdout
  }
  const status = async (c: SshConnection): Promise<XenBootStatus> => parseBootStatus(await run(c, ['status']))
  const readCfg = async (c: SshConnection): Promise<string> =>
    (await c.exec(`cat ${shq(`${L.bootDir}/grub/grub.cfg`)}`, { signal, timeoutMs: 30_000 })).stdout
  const readEnv = async (c: SshConnection): Promise<Record<string, string>> =>
    parseKeyValues((await c.exec(`grub-editenv ${shq(`${L.bootDir}/grub/grubenv`)} list 2>/dev/null || true`, { signal, timeoutMs: 30_000 })).stdout)

  progress('check', `connecting to ${host}`)
  let conn = await connect()
  try {
    await conn.exec(`mkdir -p ${shq(L.stateDir)}`, { signal, timeoutMs: 30_000 })
    await conn.writeFile(script, await readFile(XEN_BOOT_SCRIPT), 0o755)
    const facts: XenHostFacts = { ...parseHostFacts(await run(conn, ['facts'])), ...opts.factsOverride }
    const cap = xenCapability(host, facts)
    if (!cap.ok) throw new XenUnsupportedError(host, cap.reason)
    progress('check', cap.summary)
    for (const w of cap.warnings) progress('check', `warning: ${w}`)

    if (cap.action === 'already-xen') {
      const st = await status(conn)
      if (!st.trial) return { host, outcome: 'already-xen', xenVersion: st.xenVersion, warnings: cap.warnings, conn }
      // An earlier run rebooted into Xen and stopped before committing: finish it.
      progress('verify', `host ${host} is on a trial boot under Xen from an earlier run; confirming it`)
      const saved = (await readEnv(conn)).saved_entry ?? ''
      return await confirmAndCommit(conn, st.trialEntry, saved, st.xenVersion, cap.warnings)
    }

    // prepare: before apt-get, whose postinst runs update-grub when grub.cfg exists.
    const cfg0 = await readCfg(conn)
    const fallback = fallbackEntry(cfg0, await readEnv(conn), facts.kernelRelease)
    if (fallback === undefined) throw new BootstrapError(host, `no Linux entry in ${L.bootDir}/grub/grub.cfg to fall back to`)
    progress('prepare', `fallback entry: ${fallback.title} (${fallback.ref})${fallback.note !== undefined ? `; ${fallback.note}` : ''}`)
    await run(conn, ['prepare', '--fallback-entry', fallback.ref])

    if (opts.install !== false) {
      progress('install', `apt-get install ${cap.packages.join(' ')}`)
      await run(conn, ['install', ...cap.packages], opts.installTimeoutMs ?? 15 * 60_000)
    }

    progress('regenerate', `${L.mkconfig} -o ${L.bootDir}/grub/grub.cfg`)
    await run(conn, ['regenerate'], 5 * 60_000)
    const cfg = await readCfg(conn)
    if (grubDefaultSetting(cfg) !== SAVED_ENTRY) {
      throw new BootstrapError(host, `grub.cfg sets default="${grubDefaultSetting(cfg)}" instead of the saved entry: a file in ${L.etcDir}/default/grub.d sorting after supercloud-xen.cfg sets GRUB_DEFAULT; remove that setting and retry`)
    }
    const xen = findXenEntry(cfg)
    if (xen === undefined) {
      throw new BootstrapError(host, `update-grub made no Xen entry in ${L.bootDir}/grub/grub.cfg (no /boot/xen-*.gz, or no kernel with CONFIG_XEN_DOM0=y)`)
    }
    const fbPath = resolveGrubRef(parseGrubMenu(cfg), fallback.ref)
    if (fbPath === undefined) throw new BootstrapError(host, `the fallback entry '${fallback.ref}' is gone from the regenerated grub.cfg`)

    progress('arm', `grub-reboot '${xen.ref}' (${xen.title}), for the next boot only`)
    await run(conn, ['arm', '--entry', xen.ref, '--guard-seconds', String(opts.guardSeconds ?? 1800)])
    const armed = await status(conn)
    if (armed.nextEntry !== xen.ref || armed.savedEntry !== fallback.ref) {
      throw new BootstrapError(host, `grubenv after arming: next_entry='${armed.nextEntry}', saved_entry='${armed.savedEntry}' (expected '${xen.ref}' / '${fallback.ref}')`)
    }

    progress('reboot', `rebooting ${host} into Xen (boot ${armed.bootId})`)
    await run(conn, ['reboot'])
    conn.close()

    conn = await reconnect(armed.bootId)
    const st = await status(conn)
    const outcome = assessTrialBoot(st, armed.bootId, xen.ref)
    if (outcome.outcome === 'fallback') {
      await run(conn, ['disarm'])
      const after = await status(conn)
      const detail = after.savedEntry === fallback.ref ? outcome.reason : `${outcome.reason}; saved_entry is now '${after.savedEntry}'`
      throw new XenBootFallbackError(host, detail, after.savedEntry)
    }
    if (outcome.outcome === 'xen-broken') {
      await run(conn, ['revert', '--reason', outcome.reason])
      conn.close()
      throw new XenBootFallbackError(host, `${outcome.reason}; rebooting into the fallback entry`, fallback.ref)
    }
    if (outcome.outcome !== 'xen') throw new BootstrapError(host, 'the host reports the same boot after the reboot')
    return await confirmAndCommit(conn, xen.ref, fallback.ref, outcome.xenVersion, cap.warnings)
  } catch (err) {
    conn.close()
    throw err
  }

  async function reconnect (armedBootId: string): Promise<SshConnection> {
    const timeoutMs = opts.rebootTimeoutMs ?? 20 * 60_000
    const deadline = Date.now() + timeoutMs
    let last = 'no attempt yet'
    progress('reconnect', `waiting up to ${Math.round(timeoutMs / 1000)} s for ${host} to come back`)
    while (Date.now() < deadline) {
      await sleep(opts.reconnectIntervalMs ?? 5000, signal, what)
      let c: SshConnection | undefined
      try {
        c = await connect()
        const st = await status(c)
        if (st.bootId !== '' && st.bootId !== armedBootId) {
          progress('reconnect', `${host} is back (boot ${st.bootId})`)
          return c
        }
        last = 'still the boot before the reboot'
        c.close()
      } catch (err) {
        c?.close()
        if (err instanceof CancelledError) throw err
        last = err instanceof Error ? err.message : String(err)
      }
    }
    throw new HostUnreachableError(host, `it did not come back within ${Math.round(timeoutMs / 1000)} s after the reboot into Xen (last: ${last}). Xen is not its default: a reset boots its previous kernel, and a boot under Xen that nobody confirms reboots into it after ${opts.guardSeconds ?? 1800} s`)
  }

  async function confirmAndCommit (c: SshConnection, xenRef: string, fallbackRef: string, xenVersion: string, warnings: string[]): Promise<XenBootResult> {
    progress('verify', `${host} runs Xen ${xenVersion} as dom0`)
    progress('agent', 'confirming the host agent answers')
    try {
      await opts.confirmAgent(c)
    } catch (err) {
      if (err instanceof CancelledError) throw err
      const why = `the host agent did not answer under Xen: ${err instanceof Error ? err.message : String(err)}`
      await run(c, ['revert', '--reason', why]).catch(() => undefined)
      c.close()
      throw new XenBootFallbackError(host, `${why}; rebooting into the fallback entry`, fallbackRef, err)
    }
    progress('commit', `grub-set-default '${xenRef}'`)
    await run(c, ['commit', '--entry', xenRef])
    const after = await status(c)
    if (after.savedEntry !== xenRef) throw new BootstrapError(host, `saved_entry is '${after.savedEntry}' after grub-set-default '${xenRef}'`)
    progress('commit', `Xen ${xenVersion} is the default boot entry of ${host}`)
    return { host, outcome: 'booted-into-xen', xenVersion, xenEntry: xenRef, fallbackEntry: fallbackRef, warnings, conn: c }
  }
}
