/**
 * The Xen hypervisor backend: guests are PVH domains managed with `xl`, in the dom0 this
 * backend's executor reaches (locally for the host agent, or over SSH).
 *
 * Everything about a guest lives in its runDir in the dom0:
 *   domain.cfg     the xl configuration (config.ts)
 *   console.log    symlink to xenconsoled's log of the guest (/var/log/xen/console/guest-<name>.log)
 *   serial.sock    the guest console as a unix socket: socat, one console.sh (socat on the domain's console pty) per connection
 *   console.pid    that socat listener
 * A guest is "live" when a domain with its name exists (Xen domain names are unique per host).
 * GuestStatus.pid is the domain id.
 */
import { CancelledError, SupercloudError, throwIfAborted } from '../../core/errors.ts'
import type { OperationOptions, ProgressPhase } from '../../core/progress.ts'
import type { AccelMode, GuestDefinition, GuestStats, GuestStatus, HypervisorBackend, SelfMigration } from '../hypervisor.ts'
import { lastLines } from '../qemu/console-text.ts'
import { localLogRead, watchConsole } from '../console-watch.ts'
import { guestCpuAffinity, parseXlInfo, parseXlList, parseXlListLong, shq, xenAccelReason, xenDiskName, xenDomainPlan, xenSwapLink, xlState, type XlListRow } from './config.ts'
import { XenGuestNotRunningError, XenGuestStartError, XenMissingError, XenNoPvhError, XlCommandError } from './errors.ts'
import { localExecutor, type ExecOutcome, type XenExecutor } from './exec.ts'
import { XenSelfMigration, type PreparedDomain, type PreparedNic, type XenMigrationOptions } from './migration.ts'
import { XenMigration } from './backend-migration.ts'
import { XenConsole, type DomShell } from './console.ts'
import { connectSwap, disconnectSwap } from './swap-disk.ts'
import { xenRunPaths } from './paths.ts'
import { incomingName, migratedAwayName } from './migration-plan.ts'

export { XenGuestNotRunningError, XenGuestStartError, XenMigrationError, XenMissingError, XenNoPvhError, XlCommandError } from './errors.ts'
export { XenGuestDefinitionError } from './config.ts'
export { localExecutor, sshExecutor, type XenExecutor } from './exec.ts'

export interface XenBackendOptions {
  /** Where xl runs. Default: this machine (the agent inside the dom0). */
  exec?: XenExecutor
  /** xl binary. Default `xl`. */
  xl?: string
  /** Bridge for a NIC whose tap does not exist in the dom0 (or is in no bridge). Default `xenbr0`. */
  defaultBridge?: string
  /** Directory of xenconsoled's guest logs (`--log-dir`). Default /var/log/xen/console. */
  consoleLogDir?: string
  /** Time limit for `xl create` (TCG is slow). Default 180 s. */
  createTimeoutMs?: number
  /**
   * Maps the definition's initrd to the one the domain boots (the host agent passes
   * xenInitrdConverter: the tiny image's initramfs + Xen front-ends, shell on hvc0).
   * Default: used as given.
   */
  guestInitrd?: (initrd: string) => Promise<string>
  /** Live migration tuning (poll interval, time limits), see drivers/xen/migration.ts. */
  migration?: XenMigrationOptions
  /** Guests' CPUID policy in xl's `cpuid=` syntax ('' = none). Default: the host's GUEST_CPUID_FILE, if any. */
  guestCpuid?: string
}

/** Owner files of the dom0's NBD devices claimed for guests' swap disks (<dir>/nbdN holds the claiming link). */

/** A host-local guest CPUID policy (one line, xl `cpuid=` syntax) that the backend applies to every guest. */
export const GUEST_CPUID_FILE = '/etc/supercloud/xen-guest-cpuid'

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** `ask` run once and its answer kept; asked again on the next call when it failed (the dom0 was unreachable). */
function askedOnce<T> (ask: () => Promise<T>): () => Promise<T> {
  let answer: Promise<T> | undefined
  return async () => {
    answer ??= ask()
    answer.catch(() => { answer = undefined })
    return await answer
  }
}
const MiB = 1024 * 1024

export { xenRunPaths } from './paths.ts'

class XenBackend implements HypervisorBackend {
  readonly kind = 'xen' as const
  /** Xen's blkback serves raw images (a loop device in the dom0). */
  readonly diskFormat = 'raw' as const
  private readonly exec: XenExecutor
  private readonly xl: string
  private readonly defaultBridge: string
  private readonly consoleLogDir: string
  private readonly createTimeoutMs: number
  private readonly guestInitrd?: (initrd: string) => Promise<string>
  private readonly guestCpuid?: string
  private readonly locks = new Map<string, Promise<unknown>>()
  /** Shell scripts in the dom0 (for console.ts and swap-disk.ts). */
  private readonly dom: DomShell = async (script, args, o) => await this.sh(script, args, o)
  /** The guests' console listeners (console.ts). */
  private readonly console: XenConsole
  /** Live migration with xl (drivers/xen/migration.ts): the guest arrives paused, `resume` lets it run. */
  readonly selfMigration: SelfMigration
  /** BackendMigration over selfMigration (backend-migration.ts). */
  readonly migration: XenMigration

  constructor (opts: XenBackendOptions) {
    this.exec = opts.exec ?? localExecutor()
    this.xl = opts.xl ?? 'xl'
    this.defaultBridge = opts.defaultBridge ?? 'xenbr0'
    this.consoleLogDir = opts.consoleLogDir ?? '/var/log/xen/console'
    this.createTimeoutMs = opts.createTimeoutMs ?? 180_000
    if (opts.guestInitrd !== undefined) this.guestInitrd = opts.guestInitrd
    if (opts.guestCpuid !== undefined) this.guestCpuid = opts.guestCpuid
    this.console = new XenConsole(this.dom, this.xl)
    this.selfMigration = new XenSelfMigration({
      where: this.exec.where,
      xl: this.xl,
      run: async (argv, o) => await this.run(argv, o),
      domain: async name => await this.domain(name),
      prepareDomain: async (def, o) => await this.prepareDomain(def, o),
      restoreTaps: async nics => { await this.restoreTaps(nics) },
      startConsole: async (name, runDir) => { await this.console.start(name, runDir) },
      consoleRunning: async runDir => await this.console.running(runDir),
      stopConsole: async runDir => { await this.console.stop(runDir) },
      serialize: async (key, fn) => await this.serialize(key, fn)
    }, opts.migration)
    this.migration = new XenMigration(this.selfMigration)
  }

  private serialize<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(key, tail)
    void tail.then(() => { if (this.locks.get(key) === tail) this.locks.delete(key) })
    return run
  }

  private async run (argv: string[], opts: { stdin?: string | Buffer, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ExecOutcome> {
    try {
      return await this.exec.run(argv, { timeoutMs: 60_000, ...opts })
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      if (e.code === 'ENOENT' || e.code === 'EACCES') throw new XenMissingError(this.exec.where, `cannot run ${argv[0] ?? ''} (${e.code})`, err)
      if (e.name === 'AbortError' || e.code === 'ABORT_ERR') throw new CancelledError(argv.join(' '))
      throw err
    }
  }

  /** Runs xl; throws XlCommandError on failure unless allowFailure. */
  private async xlRun (args: string[], opts: { allowFailure?: boolean, timeoutMs?: number, signal?: AbortSignal } = {}): Promise<ExecOutcome> {
    const r = await this.run([this.xl, ...args], { ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}), ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
    if (r.code === 127 || /not found/.test(r.stderr) && r.code !== 0 && r.stdout === '') throw new XenMissingError(this.exec.where, `${this.xl}: ${r.stderr.trim()}`)
    if (r.code !== 0 && opts.allowFailure !== true) throw new XlCommandError(`${this.xl} ${args.join(' ')}`, r.code, r.stderr || r.stdout)
    return r
  }

  private async sh (script: string, args: string[] = [], opts: { stdin?: string | Buffer, timeoutMs?: number } = {}): Promise<ExecOutcome> {
    return await this.run(['sh', '-c', script, 'sh', ...args], opts)
  }

  /** The domain with this name, or undefined. */
  private async domain (name: string): Promise<XlListRow | undefined> {
    const r = await this.xlRun(['list', name], { allowFailure: true })
    if (r.code !== 0) {
      if (/invalid domain identifier|not found|does not exist/i.test(r.stderr)) return undefined
      throw new XlCommandError(`${this.xl} list ${name}`, r.code, r.stderr)
    }
    return parseXlList(r.stdout).find(d => d.name === name)
  }

  /** Guests' CPU affinity on this host (all CPUs but dom0's first one), from `xl info` nr_cpus; asked once. */
  private readonly guestCpus = askedOnce(async () => guestCpuAffinity(Number((await this.xlInfo()).nr_cpus ?? '1')))

  /**
   * The guests' CPUID policy: the option, else the host's GUEST_CPUID_FILE (one line, xl's
   * `cpuid=` syntax), else none; read once. The emulated Xen hosts' dom0 image
   * (images/xen-host) ships "host,xsave=0": see docs/xen.md, "Reliability under TCG".
   */
  private readonly guestCpuidPolicy = askedOnce(async () => {
    if (this.guestCpuid !== undefined) return this.guestCpuid === '' ? undefined : this.guestCpuid
    return (await this.sh('cat "$1" 2>/dev/null; exit 0', [GUEST_CPUID_FILE])).stdout.trim() || undefined
  })

  private async xlInfo (): Promise<Record<string, string>> {
    const r = await this.xlRun(['info'], { allowFailure: true })
    if (r.code !== 0) throw new XenMissingError(this.exec.where, `\`${this.xl} info\` failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`)
    return parseXlInfo(r.stdout)
  }

  async version (): Promise<string> {
    const info = await this.xlInfo()
    return info.xen_version ?? `${info.xen_major ?? '?'}.${info.xen_minor ?? '?'}${info.xen_extra ?? ''}`
  }

  async detectAccel (_probe: { kernel: string, initrd: string, readyMarker: string, timeoutMs: number, runDir: string }, opts: OperationOptions = {}): Promise<{ mode: AccelMode, reason: string }> {
    throwIfAborted(opts.signal, 'Xen capability check')
    const r = xenAccelReason(await this.xlInfo())
    opts.onProgress?.({ subject: 'accel probe', phase: 'xen', message: r.reason })
    if (!r.ok) throw new XenNoPvhError(r.reason)
    return { mode: 'xen', reason: r.reason }
  }

  start (def: GuestDefinition, opts: OperationOptions = {}): Promise<GuestStatus> {
    return this.serialize(def.name, () => this.startLocked(def, opts))
  }

  private async startLocked (given: GuestDefinition, opts: OperationOptions): Promise<GuestStatus> {
    const { signal } = opts
    let def = given
    const progress = (phase: ProgressPhase, message: string): void => opts.onProgress?.({ subject: `vm ${def.name}`, phase, message })
    throwIfAborted(signal, `start of guest ${def.name}`)
    const existing = await this.domain(def.name)
    if (existing !== undefined) {
      const state = xlState(existing.flags)
      if (state === 'running' || state === 'paused') return this.statusOf(def.name, existing)
      await this.xlRun(['destroy', def.name], { allowFailure: true })
    }
    const prepared = await this.prepareDomain(def, { signal })
    def = prepared.def
    const { plan, paths: p } = prepared
    throwIfAborted(signal, `start of guest ${def.name}`)

    progress('xen', `xl create (PVH, ${plan.memoryMiB} MiB, ${plan.vifs.length} vif(s), ${def.disks.length + (def.swap !== undefined ? 1 : 0)} disk(s))`)
    let created: ExecOutcome
    try {
      if (def.swap !== undefined) {
        const dev = await connectSwap(this.dom, def.name, def.runDir, def.swap)
        progress('swap', `swap disk: ${dev} on ${def.swap.socketPath}`)
      }
      created = await this.xlRun(['create', p.config], { allowFailure: true, timeoutMs: this.createTimeoutMs, ...(signal !== undefined ? { signal } : {}) })
    } catch (err) {
      await this.destroyLocked(def.name, def.runDir)
      throw err
    }
    if (created.code !== 0) {
      await this.destroyLocked(def.name, def.runDir)
      throw new XenGuestStartError(def.name, `xl create exited ${created.code ?? 'by signal'}`, created.stderr)
    }
    try {
      throwIfAborted(signal, `start of guest ${def.name}`)
      if (plan.balloonMiB !== undefined) {
        progress('balloon', `setting balloon target to ${plan.balloonMiB} MiB`)
        await this.xlRun(['mem-set', def.name, `${plan.balloonMiB}m`])
      }
      await this.console.start(def.name, def.runDir)
      const d = await this.domain(def.name)
      if (d === undefined) throw new XenGuestStartError(def.name, 'the domain disappeared right after xl create', await this.consoleTail(def.runDir, 30))
      progress('xen', `domain ${d.domid} is ${d.flags}`)
      return this.statusOf(def.name, d)
    } catch (err) {
      await this.destroyLocked(def.name, def.runDir)
      throw err
    }
  }

  /**
   * What start() and an incoming migration share: the initrd the domain boots (guestInitrd),
   * which bridge each NIC's tap is in (the vif takes the tap's name and place: the tap is
   * deleted here), the xl configuration written to <runDir>/domain.cfg, and console.log
   * pointing at the log xenconsoled will write (it names it after the domain's name when the
   * domain appears: `<name>--incoming` for a migration). Throws XenGuestStartError (missing
   * files) or XenGuestDefinitionError.
   */
  private async prepareDomain (given: GuestDefinition, opts: { signal?: AbortSignal, incoming?: boolean } = {}): Promise<PreparedDomain> {
    let def = given
    const boot = def.boot
    if (this.guestInitrd !== undefined && boot.kind === 'kernel' && boot.initrd !== undefined) {
      try {
        def = { ...def, boot: { ...boot, initrd: await this.guestInitrd(boot.initrd) } }
      } catch (err) {
        throw new XenGuestStartError(def.name, `cannot prepare the Xen initramfs from ${boot.initrd}: ${(err as Error).message}`, '', err)
      }
    }
    throwIfAborted(opts.signal, `preparing guest ${def.name}`)

    // Files the domain needs, and which bridge each NIC's tap is in (the vif takes its name and place).
    const files = def.boot.kind === 'kernel' ? [def.boot.kernel, ...(def.boot.initrd !== undefined ? [def.boot.initrd] : []), ...def.disks.map(d => d.path)] : []
    const taps = def.nics.map(n => n.tap)
    const probe = await this.sh([
      'for f in "$@"; do case "$f" in',
      '  file:*) [ -e "${f#file:}" ] || echo "missing ${f#file:}" ;;',
      '  tap:*) t="${f#tap:}"; b=""; [ -e "/sys/class/net/$t/master" ] && b=$(basename "$(readlink "/sys/class/net/$t/master")");',
      '         k=none; [ -e "/sys/class/net/$t" ] && k=dev; [ -e "/sys/class/net/$t/tun_flags" ] && k=tap; echo "nic $t $k $b" ;;',
      'esac; done'
    ].join('\n'), [...files.map(f => `file:${f}`), ...taps.map(t => `tap:${t}`)])
    const missing = probe.stdout.split('\n').filter(l => l.startsWith('missing ')).map(l => l.slice(8))
    const nics: PreparedNic[] = []
    for (const l of probe.stdout.split('\n')) {
      const [w, t, kind, bridge] = l.split(' ')
      if (w !== 'nic' || t === undefined) continue
      const inBridge = bridge !== undefined && bridge !== ''
      nics.push({ name: t, bridge: inBridge ? bridge : this.defaultBridge, wasTap: kind === 'tap', tapBridge: inBridge ? bridge : undefined })
    }
    const bridgeOf = (tap: string): string => nics.find(n => n.name === tap)?.bridge ?? this.defaultBridge
    const cpus = await this.guestCpus()
    const cpuid = await this.guestCpuidPolicy()
    const plan = xenDomainPlan(opts.incoming === true ? { ...def, incoming: true } : def, bridgeOf, { ...(cpus !== undefined ? { cpus } : {}), ...(cpuid !== undefined ? { cpuid } : {}) })
    if (missing.length > 0) throw new XenGuestStartError(def.name, missing.map(m => `${m} does not exist in the dom0`).join('; '))

    const p = xenRunPaths(def.runDir)
    const guestLog = `${this.consoleLogDir}/guest-${opts.incoming === true ? incomingName(def.name) : def.name}.log`
    const tapsToDelete = nics.filter(n => n.wasTap).map(n => n.name)
    // A fresh console log per start (xenconsoled opens guest-<name>.log when the domain appears).
    const prep = await this.sh('mkdir -p "$1" && cat > "$2" && { [ ! -e "$3" ] || mv -f "$3" "$3.1"; } && ln -sfn "$3" "$4" && rm -f "$5"' + tapsToDelete.map((_, i) => ` && ip link del "\${${6 + i}}"`).join(''),
      [def.runDir, p.config, guestLog, p.consoleLog, p.serial, ...tapsToDelete], { stdin: plan.config })
    if (prep.code !== 0) throw new XenGuestStartError(def.name, `cannot prepare ${def.runDir}`, prep.stderr)
    return { def, plan, paths: p, nics }
  }

  /** Puts back the taps prepareDomain deleted (an incoming migration that did not arrive), in their bridges. Best effort. */
  private async restoreTaps (nics: PreparedNic[]): Promise<void> {
    const back = nics.filter(n => n.wasTap)
    if (back.length === 0) return
    // iproute2's ip for tuntap (a dom0 script's bare `ip` can be busybox's applet).
    await this.sh('IP=/usr/bin/ip; [ -x "$IP" ] || IP=ip; while [ $# -gt 0 ]; do t=$1 b=$2; shift 2; [ -e "/sys/class/net/$t" ] && continue; ' +
      '"$IP" tuntap add dev "$t" mode tap && { [ -z "$b" ] || "$IP" link set "$t" master "$b"; } && "$IP" link set "$t" up; done; exit 0',
    back.flatMap(n => [n.name, n.tapBridge ?? '']))
  }

  private statusOf (name: string, d: XlListRow): GuestStatus {
    return { name, state: xlState(d.flags), pid: d.domid, detail: d.flags }
  }

  stop (name: string, runDir: string, timeoutMs: number): Promise<void> {
    return this.serialize(name, async () => {
      if (await this.domain(name) !== undefined) {
        const r = await this.xlRun(['shutdown', name], { allowFailure: true })
        const deadline = Date.now() + timeoutMs
        if (r.code === 0) {
          while (Date.now() < deadline && await this.domain(name) !== undefined) await sleep(250)
        }
      }
      await this.destroyLocked(name, runDir)
    })
  }

  destroy (name: string, runDir: string): Promise<void> {
    // A pending arrival of this guest stops first (its listener, the half-arrived domain).
    this.migration.forget(name)
    return this.serialize(name, () => this.destroyLocked(name, runDir))
  }

  /** Destroys the domain, and the same guest under a migration's temporary name (<name>--incoming / --migratedaway). */
  private async destroyLocked (name: string, runDir: string): Promise<void> {
    for (const n of [name, incomingName(name), migratedAwayName(name)]) {
      if (await this.domain(n) === undefined) continue
      const r = await this.xlRun(['destroy', n], { allowFailure: true, timeoutMs: 60_000 })
      if (r.code !== 0 && await this.domain(n) !== undefined) throw new XlCommandError(`${this.xl} destroy ${n}`, r.code, r.stderr)
    }
    await this.console.stop(runDir)
    await disconnectSwap(this.dom, runDir)
  }

  status (name: string, _runDir: string): Promise<GuestStatus> {
    return this.serialize(name, async () => {
      const d = await this.domain(name)
      if (d !== undefined) return this.statusOf(name, d)
      // During a live migration xl names the guest <name>--incoming (destination) or
      // <name>--migratedaway (source, once the destination holds it): the guest is there,
      // but not as a running <name> (QEMU's backend says 'other' / inmigrate, postmigrate).
      const all = parseXlList((await this.xlRun(['list'])).stdout)
      const incoming = all.find(x => x.name === incomingName(name))
      if (incoming !== undefined) return { name, state: 'other', pid: incoming.domid, detail: `inmigrate (${incoming.name} ${incoming.flags})` }
      const away = all.find(x => x.name === migratedAwayName(name))
      if (away !== undefined) return { name, state: 'other', pid: away.domid, detail: `postmigrate (${away.name} ${away.flags})` }
      return { name, state: 'absent' }
    })
  }

  setBalloon (name: string, _runDir: string, bytes: number): Promise<void> {
    return this.serialize(name, async () => {
      if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new SupercloudError('SC_GUEST_DEFINITION', `balloon target must be a positive number of bytes, got ${bytes}`)
      if (await this.domain(name) === undefined) throw new XenGuestNotRunningError(name)
      await this.xlRun(['mem-set', name, `${Math.floor(bytes / 1024)}k`])
    })
  }

  stats (name: string, _runDir: string): Promise<GuestStats> {
    return this.serialize(name, async () => {
      const d = await this.domain(name)
      if (d === undefined) throw new XenGuestNotRunningError(name)
      const long = parseXlListLong((await this.xlRun(['list', '-l', name])).stdout).find(x => x.name === name)
      if (long === undefined) throw new XenGuestNotRunningError(name)
      const memoryBytes = long.maxMemKb * 1024
      // xl list's Mem: the pages the domain holds now (what the balloon left it, and what the host spends on it).
      const current = d.memMiB * MiB
      return { memoryBytes, balloonActualBytes: Math.min(current, memoryBytes), residentBytes: current }
    })
  }

  consoleSocket (runDir: string): string {
    return xenRunPaths(runDir).serial
  }

  async consoleTail (runDir: string, lines: number): Promise<string> {
    const n = Math.max(0, Math.floor(lines))
    if (n === 0) return ''
    const r = await this.run(['tail', '-n', String(n), xenRunPaths(runDir).consoleLog])
    return r.code === 0 ? lastLines(r.stdout, n) : ''
  }

  /**
   * Reads console.log in the dom0 from where the last look ended: as a file when the backend
   * runs in the dom0 (the host agent), else through the executor every half second.
   */
  async waitForConsole (name: string, runDir: string, pattern: string | RegExp, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const log = xenRunPaths(runDir).consoleLog
    if (this.exec.where === 'local') {
      await watchConsole({ read: localLogRead(log) }, name, pattern, timeoutMs, signal)
      return
    }
    await watchConsole({
      read: async offset => {
        const r = await this.sh('s=$(stat -L -c %s "$1" 2>/dev/null) || exit 3; o=$2; [ "$s" -ge "$o" ] || o=0; echo "$s"; tail -c "+$((o + 1))" "$1" | head -c "$((s - o))"', [log, String(offset)])
        if (r.code !== 0) return undefined
        const nl = r.stdout.indexOf('\n')
        const size = Number(r.stdout.slice(0, nl))
        if (nl < 0 || !Number.isSafeInteger(size)) return undefined
        return { text: r.stdout.slice(nl + 1), next: size, restarted: size < offset }
      }
    }, name, pattern, timeoutMs, signal, 500)
  }

  /**
   * The swap disk is the xvd disk after the data disks. Beyond 25 data disks there is no such
   * name: xenDomainPlan refuses that guest at start, so the last name stands in until then.
   */
  swapDeviceName (diskCount: number): string {
    return xenDiskName(Math.min(diskCount, 25))
  }
}

export function createXenBackend (opts: XenBackendOptions = {}): HypervisorBackend & { readonly selfMigration: SelfMigration, readonly migration: XenMigration } {
  return new XenBackend(opts)
}

/** Pids and command lines of dom0 processes whose command line mentions `text` (tests, leftovers). */
export async function xenProcessesMentioning (exec: XenExecutor, text: string): Promise<Array<{ pid: number, args: string }>> {
  const r = await exec.run(['ps', '-o', 'pid,args'])
  return r.stdout.split('\n').slice(1).map(l => /^\s*(\d+)\s+(.*)$/.exec(l)).filter((m): m is RegExpExecArray => m !== null)
    .map(m => ({ pid: Number(m[1]), args: m[2] ?? '' })).filter(p => p.args.includes(text))
}

export { shq }
