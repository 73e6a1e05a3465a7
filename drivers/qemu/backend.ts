/**
 * The QEMU hypervisor backend: runs guests as detached qemu-system-x86_64
 * processes (own session, so they outlive the agent that started them) and
 * controls them over QMP. Everything about a guest lives in its runDir (see
 * args.ts for the layout); a guest is "live" when the pid in its pidfile is a
 * running QEMU whose command line names that pidfile.
 */
import { execFile, spawn } from 'node:child_process'
import { constants as fsc } from 'node:fs'
import { access, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CancelledError, GuestBootError, QmpError, SupercloudError, throwIfAborted } from '../../core/errors.ts'
import type { OperationOptions, ProgressEvent, ProgressPhase } from '../../core/progress.ts'
import type { AccelMode, GuestDefinition, GuestRunState, GuestStats, GuestPlugged, GuestStatus, HypervisorBackend, LiveUpdate } from '../hypervisor.ts'
import { buildQemuArgs, runPaths, validateDefinition, virtioDiskName } from './args.ts'
import { QemuMigration } from './backend-migration.ts'
import { TLS_DIR } from './migration-tls.ts'
import { GuestNotRunningError, GuestStartError, HypervisorMissingError } from './errors.ts'
import { QmpClient, withQmp } from './qmp.ts'
import { LiveUpdateRefused, liveSteps } from './hotplug.ts'
import { lastLines } from './console-text.ts'
import { localLogRead, watchConsole } from '../console-watch.ts'

export { HypervisorMissingError, GuestStartError, GuestNotRunningError, GuestDefinitionError, QmpCommandError } from './errors.ts'
export { runPaths } from './args.ts'

export interface QemuBackendOptions {
  /** qemu-system-x86_64 binary (name looked up in PATH, or a path). */
  binary?: string
  /** How long start() waits for QEMU's QMP socket to answer. Default 30 s. */
  startTimeoutMs?: number
  /** Balloon statistics polling interval set on every guest, seconds (0 = off). Default 2. */
  balloonStatsIntervalS?: number
}

const DEFAULT_BINARY = 'qemu-system-x86_64'
const QMP_OP_TIMEOUT_MS = 10_000
/** How long a hot-unplug may wait for the guest to release the device. */
const HOTUNPLUG_TIMEOUT_MS = 30_000
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

// ---------------------------------------------------------------- processes

async function readPidfile (pidfile: string): Promise<number | undefined> {
  try {
    const n = Number.parseInt((await readFile(pidfile, 'utf8')).trim(), 10)
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  } catch { return undefined }
}

/** True when `pid` is a live (not zombie) process whose argv contains `pidfile` (guards against pid reuse). */
async function isQemuFor (pid: number, pidfile: string): Promise<boolean> {
  try {
    const st = await readFile(`/proc/${pid}/stat`, 'utf8')
    const state = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3)
    if (state === 'Z' || state === 'X' || state === '') return false
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    return argv.includes(pidfile)
  } catch { return false }
}

/** The pid of the live QEMU for this runDir, if any. */
export async function livePid (runDir: string): Promise<number | undefined> {
  const p = runPaths(runDir)
  const pid = await readPidfile(p.pidfile)
  if (pid === undefined) return undefined
  return await isQemuFor(pid, p.pidfile) ? pid : undefined
}

async function guestNameOf (pid: number): Promise<string | undefined> {
  try {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
    const i = argv.indexOf('-name')
    const v = i >= 0 ? argv[i + 1] : undefined
    return v?.replace(/^guest=/, '').replace(/,,/g, ',')
  } catch { return undefined }
}

/** Waits until the process is gone (or a zombie); true when it went away within timeoutMs. */
async function waitGone (pid: number, pidfile: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (!await isQemuFor(pid, pidfile)) return true
    if (Date.now() >= deadline) return false
    await sleep(100)
  }
}

function signalIfQemu (pid: number, sig: NodeJS.Signals): void {
  try { process.kill(pid, sig) } catch { /* already gone */ }
}

async function exists (p: string): Promise<boolean> {
  try { await access(p, fsc.F_OK); return true } catch { return false }
}

async function tailFile (path: string, maxBytes: number): Promise<string> {
  let fh
  try { fh = await open(path, 'r') } catch { return '' }
  try {
    const size = (await fh.stat()).size
    const len = Math.min(size, maxBytes)
    const buf = Buffer.alloc(len)
    await fh.read(buf, 0, len, size - len)
    return buf.toString('utf8')
  } finally { await fh.close() }
}

/** Last `lines` lines of the guest's console log ('' when there is none). */
export async function readConsoleTail (runDir: string, lines: number): Promise<string> {
  return lastLines(await tailFile(runPaths(runDir).consoleLog, 256 * 1024), lines)
}

// ---------------------------------------------------------------- console

/**
 * Watches the guest's console.log until `pattern` appears (anywhere in the log
 * of the current boot). On timeout, or when the guest's QEMU exits first, throws
 * GuestBootError carrying the console tail. Honors `signal` (CancelledError).
 */
export async function waitForConsole (runDir: string, pattern: string | RegExp, timeoutMs: number, signal?: AbortSignal, name?: string): Promise<void> {
  const p = runPaths(runDir)
  const pid = await livePid(runDir)
  const vm = name ?? (pid !== undefined ? await guestNameOf(pid) : undefined) ?? runDir
  await watchConsole({
    read: localLogRead(p.consoleLog),
    exited: async () => {
      if (pid === undefined || await isQemuFor(pid, p.pidfile)) return undefined
      const qemuLog = (await tailFile(p.qemuLog, 4096)).trim()
      return { what: 'QEMU', note: qemuLog !== '' ? ` (qemu: ${qemuLog.split('\n').slice(-3).join(' | ')})` : '' }
    }
  }, vm, pattern, timeoutMs, signal)
}

// ---------------------------------------------------------------- backend

function mapState (qemuStatus: string): GuestRunState {
  switch (qemuStatus) {
    case 'running': return 'running'
    case 'paused': case 'suspended': case 'prelaunch': return 'paused'
    case 'shutdown': return 'shutdown'
    default: return 'other'
  }
}

class QemuBackend implements HypervisorBackend {
  readonly kind = 'qemu' as const
  readonly diskFormat = 'qcow2' as const
  /** QEMU's migration over QMP, disks mirrored over NBD (backend-migration.ts). */
  readonly migration = new QemuMigration(async def => await this.start(def))
  private readonly binary: string
  private readonly startTimeoutMs: number
  private readonly balloonStatsIntervalS: number
  private readonly locks = new Map<string, Promise<unknown>>()

  constructor (opts: QemuBackendOptions) {
    this.binary = opts.binary ?? DEFAULT_BINARY
    this.startTimeoutMs = opts.startTimeoutMs ?? 30_000
    this.balloonStatsIntervalS = opts.balloonStatsIntervalS ?? 2
  }

  /** Runs fn with the per-runDir lock held (one QMP client at a time per guest in this process). */
  private serialize<T> (runDir: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(runDir) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(runDir, tail)
    void tail.then(() => { if (this.locks.get(runDir) === tail) this.locks.delete(runDir) })
    return run
  }

  private missing (err: NodeJS.ErrnoException): HypervisorMissingError | undefined {
    if (err.code === 'ENOENT' || err.code === 'EACCES' || err.code === 'ENOTDIR') return new HypervisorMissingError(this.binary, err.code, err)
    return undefined
  }

  async version (): Promise<string> {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(this.binary, ['--version'], { timeout: 15_000 }, (err, stdout, stderr) => {
        if (err !== null) {
          const m = this.missing(err as NodeJS.ErrnoException)
          reject(m ?? new SupercloudError('SC_HYPERVISOR_BROKEN', `${this.binary} --version failed: ${String(stderr).trim() || err.message}`, { cause: err }))
        } else resolve(String(stdout))
      })
    })
    const first = out.split('\n')[0]?.trim() ?? ''
    const m = /version\s+(\S+)/.exec(first)
    return m?.[1] ?? first
  }

  async detectAccel (probe: { kernel: string, initrd: string, readyMarker: string, timeoutMs: number, runDir: string }, opts: OperationOptions = {}): Promise<{ mode: AccelMode, reason: string }> {
    const progress = (message: string): void => opts.onProgress?.({ subject: 'accel probe', phase: 'kvm', message })
    try {
      const st = await stat('/dev/kvm')
      if (!st.isCharacterDevice()) return { mode: 'tcg', reason: '/dev/kvm is not a character device' }
      const fh = await open('/dev/kvm', fsc.O_RDWR)
      await fh.close()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      return { mode: 'tcg', reason: code === 'ENOENT' ? '/dev/kvm is absent' : `cannot open /dev/kvm (${code ?? (err as Error).message})` }
    }
    const def: GuestDefinition = {
      name: 'probe',
      cpus: 1,
      memoryBytes: 256 * 1024 * 1024,
      accel: 'kvm',
      boot: { kind: 'kernel', kernel: probe.kernel, initrd: probe.initrd, append: 'console=ttyS0 sc.name=probe' },
      disks: [],
      nics: [],
      runDir: probe.runDir
    }
    const secs = `${Math.round(probe.timeoutMs / 100) / 10}s`
    await this.destroy(def.name, def.runDir)
    try {
      progress('booting a probe guest under KVM')
      const t0 = Date.now()
      try {
        await this.start(def, opts.signal !== undefined ? { signal: opts.signal } : {})
      } catch (err) {
        if (err instanceof CancelledError || err instanceof HypervisorMissingError) throw err
        const detail = err instanceof GuestStartError && err.stderr.trim() !== '' ? err.stderr.trim().split('\n').slice(-1)[0] : (err as Error).message
        return { mode: 'tcg', reason: `QEMU could not start a guest under KVM: ${detail}` }
      }
      try {
        await waitForConsole(def.runDir, probe.readyMarker, Math.max(0, probe.timeoutMs - (Date.now() - t0)), opts.signal, def.name)
      } catch (err) {
        if (err instanceof GuestBootError) return { mode: 'tcg', reason: `guest did not boot under KVM within ${secs}` }
        throw err
      }
      return { mode: 'kvm', reason: `probe guest booted under KVM in ${Math.round((Date.now() - t0) / 100) / 10}s` }
    } finally {
      await this.destroy(def.name, def.runDir)
      progress('probe guest removed')
    }
  }

  start (def: GuestDefinition, opts: OperationOptions = {}): Promise<GuestStatus> {
    try { validateDefinition(def) } catch (err) { return Promise.reject(err) }
    return this.serialize(def.runDir, () => this.startLocked(def, opts))
  }

  private async startLocked (def: GuestDefinition, opts: OperationOptions): Promise<GuestStatus> {
    const { signal } = opts
    const progress = (phase: ProgressPhase, message: string): void => {
      const ev: ProgressEvent = { subject: `vm ${def.name}`, phase, message }
      opts.onProgress?.(ev)
    }
    throwIfAborted(signal, `start of guest ${def.name}`)
    const p = runPaths(def.runDir)
    if (await livePid(def.runDir) !== undefined) return await this.statusLocked(def.name, def.runDir)

    const files: Array<[string, string]> = []
    if (def.boot.kind === 'kernel') {
      files.push(['kernel', def.boot.kernel])
      if (def.boot.initrd !== undefined) files.push(['initrd', def.boot.initrd])
    }
    for (const d of def.disks) files.push([`disk ${d.id}`, d.path])
    for (const [what, path] of files) {
      if (!await exists(path)) throw new GuestStartError(def.name, `${what} ${path} does not exist`)
    }
    const args = buildQemuArgs(def)

    await mkdir(def.runDir, { recursive: true })
    for (const f of [p.qmp, p.qmpMigration, p.serial, p.pidfile]) await rm(f, { force: true })
    if (await exists(p.consoleLog)) await rename(p.consoleLog, `${p.consoleLog}.1`)
    const log = await open(p.qemuLog, 'w')
    progress('qemu', `starting ${this.binary} (${def.accel})`)
    let exited: { code: number | null, sig: NodeJS.Signals | null } | undefined
    let spawnErr: Error | undefined
    let child
    try {
      // Own session (setsid) and no pipes: the guest outlives the process that started it.
      child = spawn(this.binary, args, { detached: true, stdio: ['ignore', log.fd, log.fd] })
      child.on('exit', (code, sig) => { exited = { code, sig } })
      child.on('error', err => { spawnErr = err })
      child.unref()
    } finally {
      await log.close()
    }
    const kill = async (): Promise<void> => {
      if (exited === undefined && child.pid !== undefined) {
        signalIfQemu(child.pid, 'SIGKILL')
        const until = Date.now() + 5000
        while (exited === undefined && Date.now() < until) await sleep(50)
      }
      for (const f of [p.qmp, p.serial, p.pidfile]) await rm(f, { force: true })
    }

    // Wait for QMP to answer, or QEMU to exit, or the start timeout.
    const deadline = Date.now() + this.startTimeoutMs
    let qmp: QmpClient | undefined
    try {
      while (qmp === undefined) {
        if (spawnErr !== undefined) {
          throw this.missing(spawnErr as NodeJS.ErrnoException) ?? new GuestStartError(def.name, `cannot run ${this.binary}: ${spawnErr.message}`, '', spawnErr)
        }
        if (exited !== undefined) {
          await sleep(50) // let the log flush
          const stderr = await tailFile(p.qemuLog, 8192)
          throw new GuestStartError(def.name, `QEMU exited at start (${exited.code !== null ? `status ${exited.code}` : `signal ${String(exited.sig)}`})`, stderr)
        }
        if (signal?.aborted === true) throw new CancelledError(`start of guest ${def.name}`)
        if (Date.now() >= deadline) {
          throw new GuestStartError(def.name, `QEMU did not open its QMP socket within ${this.startTimeoutMs} ms`, await tailFile(p.qemuLog, 8192))
        }
        if (await exists(p.qmp)) {
          try {
            qmp = await QmpClient.connect(p.qmp, { timeoutMs: Math.max(1000, Math.min(5000, deadline - Date.now())), ...(signal !== undefined ? { signal } : {}) })
            break
          } catch (err) {
            if (err instanceof CancelledError) throw err
          }
        }
        await sleep(100)
      }
      try {
        if (this.balloonStatsIntervalS > 0) {
          await qmp.execute('qom-set', { path: '/machine/peripheral/balloon0', property: 'guest-stats-polling-interval', value: this.balloonStatsIntervalS }, { timeoutMs: QMP_OP_TIMEOUT_MS })
        }
        // An incoming guest gets its balloon state with the migrated device state.
        if (def.incoming !== true && def.balloonTargetBytes !== undefined && def.balloonTargetBytes < def.memoryBytes) {
          progress('balloon', `setting balloon target to ${def.balloonTargetBytes} bytes`)
          await qmp.execute('balloon', { value: def.balloonTargetBytes }, { timeoutMs: QMP_OP_TIMEOUT_MS })
        }
        const st = await qmp.execute<{ status: string }>('query-status', undefined, { timeoutMs: QMP_OP_TIMEOUT_MS })
        progress('qemu', `QEMU pid ${String(child.pid)} is ${st.status}`)
        return { name: def.name, state: mapState(st.status), pid: child.pid, detail: st.status }
      } finally {
        await qmp.close()
      }
    } catch (err) {
      await kill()
      throw err
    }
  }

  stop (name: string, runDir: string, timeoutMs: number): Promise<void> {
    return this.serialize(runDir, async () => {
      const p = runPaths(runDir)
      const pid = await livePid(runDir)
      if (pid === undefined) return
      try {
        await withQmp(p.qmp, q => q.execute('system_powerdown', undefined, { timeoutMs: 5000 }), { timeoutMs: 5000 })
      } catch { /* QMP unusable: fall through to killing */ }
      if (await waitGone(pid, p.pidfile, timeoutMs)) return
      await this.killLocked(pid, runDir)
    })
  }

  /** QMP quit, then SIGTERM, then SIGKILL; returns once the process is gone. */
  private async killLocked (pid: number, runDir: string): Promise<void> {
    const p = runPaths(runDir)
    try {
      await withQmp(p.qmp, q => q.execute('quit', undefined, { timeoutMs: 3000 }).catch((err: unknown) => {
        // QEMU may close the socket before answering quit.
        if (!(err instanceof QmpError)) throw err
      }), { timeoutMs: 3000 })
    } catch { /* fall back to signals */ }
    if (await waitGone(pid, p.pidfile, 3000)) return
    if (await isQemuFor(pid, p.pidfile)) signalIfQemu(pid, 'SIGTERM')
    if (await waitGone(pid, p.pidfile, 3000)) return
    if (await isQemuFor(pid, p.pidfile)) signalIfQemu(pid, 'SIGKILL')
    if (!await waitGone(pid, p.pidfile, 10_000)) throw new SupercloudError('SC_GUEST_KILL', `QEMU pid ${pid} of ${runDir} did not exit after SIGKILL`)
  }

  destroy (name: string, runDir: string): Promise<void> {
    return this.serialize(runDir, async () => {
      const p = runPaths(runDir)
      const pid = await livePid(runDir)
      if (pid !== undefined) await this.killLocked(pid, runDir)
      for (const f of [p.qmp, p.serial, p.pidfile]) await rm(f, { force: true })
      // A destination's migration key file (migration-tls.ts), when the migration never finished.
      await rm(join(runDir, TLS_DIR), { recursive: true, force: true })
    })
  }

  status (name: string, runDir: string): Promise<GuestStatus> {
    return this.serialize(runDir, () => this.statusLocked(name, runDir))
  }

  private async statusLocked (name: string, runDir: string): Promise<GuestStatus> {
    const pid = await livePid(runDir)
    if (pid === undefined) return { name, state: 'absent' }
    try {
      const st = await withQmp(runPaths(runDir).qmp, q => q.execute<{ status: string }>('query-status', undefined, { timeoutMs: QMP_OP_TIMEOUT_MS }), { timeoutMs: QMP_OP_TIMEOUT_MS })
      return { name, state: mapState(st.status), pid, detail: st.status }
    } catch (err) {
      return { name, state: 'other', pid, detail: `QMP unavailable: ${(err as Error).message}` }
    }
  }

  /** Hot-plugs (and unplugs) what `u.to` has more (or less) than the running `u.from` (hotplug.ts). */
  liveUpdate (u: LiveUpdate, opts: OperationOptions = {}): Promise<GuestPlugged> {
    return this.serialize(u.from.runDir, async () => {
      let plan
      try {
        plan = liveSteps(u.from, u.to, u.from.accel === 'kvm' ? 'host' : 'max')
      } catch (err) {
        if (err instanceof LiveUpdateRefused) throw new SupercloudError('SC_LIVE_UPDATE_UNSUPPORTED', `${u.from.name}: ${err.message}; nothing was changed`)
        throw err
      }
      if (await livePid(u.from.runDir) === undefined) throw new GuestNotRunningError(u.from.name, u.from.runDir)
      await withQmp(runPaths(u.from.runDir).qmp, async q => {
        for (const s of plan.steps) {
          throwIfAborted(opts.signal, `live update of ${u.from.name}`)
          opts.onProgress?.({ subject: `vm ${u.from.name}`, phase: 'hotplug', message: `${s.execute} ${String(s.arguments.id ?? s.arguments['node-name'] ?? '')}`.trim() })
          const deleted = s.awaitDeleted !== undefined ? q.waitForEvent('DEVICE_DELETED', ev => (ev.data as { device?: string } | undefined)?.device === s.awaitDeleted, HOTUNPLUG_TIMEOUT_MS, opts.signal) : undefined
          deleted?.catch(() => {})
          await q.execute(s.execute, s.arguments, { timeoutMs: QMP_OP_TIMEOUT_MS })
          // A PCIe unplug waits for the guest to let the device go (Linux's pciehp takes ~5 s).
          if (deleted !== undefined) await deleted
        }
      }, { timeoutMs: QMP_OP_TIMEOUT_MS })
      return plan.plugged
    })
  }

  setBalloon (name: string, runDir: string, bytes: number): Promise<void> {
    return this.serialize(runDir, async () => {
      if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new SupercloudError('SC_GUEST_DEFINITION', `balloon target must be a positive number of bytes, got ${bytes}`)
      if (await livePid(runDir) === undefined) throw new GuestNotRunningError(name, runDir)
      await withQmp(runPaths(runDir).qmp, q => q.execute('balloon', { value: bytes }, { timeoutMs: QMP_OP_TIMEOUT_MS }), { timeoutMs: QMP_OP_TIMEOUT_MS })
    })
  }

  stats (name: string, runDir: string): Promise<GuestStats> {
    return this.serialize(runDir, async () => {
      const pid = await livePid(runDir)
      if (pid === undefined) throw new GuestNotRunningError(name, runDir)
      const [balloon, mem] = await withQmp(runPaths(runDir).qmp, async q => [
        await q.execute<{ actual: number }>('query-balloon', undefined, { timeoutMs: QMP_OP_TIMEOUT_MS }),
        await q.execute<{ 'base-memory': number, 'plugged-memory'?: number }>('query-memory-size-summary', undefined, { timeoutMs: QMP_OP_TIMEOUT_MS })
      ] as const, { timeoutMs: QMP_OP_TIMEOUT_MS })
      let residentBytes = 0
      try {
        const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
        if (m?.[1] !== undefined) residentBytes = Number(m[1]) * 1024
      } catch { /* process just went away */ }
      // Whole MiB: under TCG the guest has TCG_RAM_PAD_BYTES more than it asked for (args.ts);
      // both figures leave the pad out, so a deflated balloon reports exactly the memory.
      const total = mem['base-memory'] + (mem['plugged-memory'] ?? 0)
      const pad = total % 1048576
      return { memoryBytes: total - pad, balloonActualBytes: balloon.actual - pad, residentBytes }
    })
  }

  consoleSocket (runDir: string): string {
    return runPaths(runDir).serial
  }

  consoleTail (runDir: string, lines: number): Promise<string> {
    return readConsoleTail(runDir, lines)
  }

  async waitForConsole (name: string, runDir: string, pattern: string | RegExp, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    await waitForConsole(runDir, pattern, timeoutMs, signal, name)
  }

  /** The swap disk is the virtio disk after the data disks. */
  swapDeviceName (diskCount: number): string {
    return virtioDiskName(diskCount)
  }
}

export function createQemuBackend (opts: QemuBackendOptions = {}): HypervisorBackend {
  return new QemuBackend(opts)
}
