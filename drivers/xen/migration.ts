/**
 * Live migration of Xen guests (`SelfMigration` of drivers/hypervisor.ts): `xl migrate` on
 * the source, `xl migrate-receive -p` behind a one-connection socat listener on the
 * destination, both run through the backend's executor (the host agent in the dom0, or SSH).
 *
 * Both ends run **detached** in the dom0 (own session, pid / stderr / exit status in files in
 * the guest's runDir, see migration-plan.ts) and are polled, instead of one blocking command:
 * the executor returns output only at the end (xl's progress must be read while it runs), a
 * cancelled SSH command does not reach xl's process group, and a long command over SSH dies
 * with the connection (a loaded TCG dom0 can drop it; the poll reconnects, the migration
 * goes on).
 *
 * Cancelling a send kills only the transport (socat): xl then takes its own failure path and
 * resumes the guest here (a guest killed with xl in its last round would stay suspended, and
 * xl has no resume command). Past the point of no return (xl has renamed the guest
 * `<name>--migratedaway` and told the destination to start it) a cancel is ignored: send
 * resolves, since the guest is at the destination.
 */
import { CancelledError, throwIfAborted } from '../../core/errors.ts'
import type { GuestDefinition, SelfMigration, SelfMigrationProgress, SelfMigrationResult, StreamEnd } from '../hypervisor.ts'
import type { XenDomainPlan, XlListRow } from './config.ts'
import { xlState } from './config.ts'
import { XenGuestNotRunningError, XenMigrationError } from './errors.ts'
import type { ExecOutcome } from './exec.ts'
import {
  checkEndpoint, detachedArgv, incomingName, isListening, killGroupArgv, migratedAwayName, operatorLog, parsePoll, pastPointOfNoReturn,
  pollArgv, receiverArgv, receiverStartedDomain, receiveLogTail, sendOutcome, sendProgressOf, senderArgv, senderRune, streamTlsPaths, xenMigrationPaths,
  type DetachedPoll, type StreamTlsFiles
} from './migration-plan.ts'
import { MIGRATION_CLIENT_CN, MIGRATION_SERVER_CN } from '../../core/migration.ts'

const MiB = 1024 * 1024
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** A NIC as prepared for a domain: the vif's name, its bridge, and whether a tap of that name was deleted for it. */
export interface PreparedNic {
  name: string
  bridge: string
  wasTap: boolean
  /** The bridge the tap was in (undefined: in none). */
  tapBridge: string | undefined
}

export interface PreparedDomain {
  /** The definition as the domain uses it (initrd converted). */
  def: GuestDefinition
  plan: XenDomainPlan
  paths: { config: string, consoleLog: string, serial: string }
  nics: PreparedNic[]
}

/** What the migration needs of the backend (drivers/xen/backend.ts implements it). */
export interface XenMigrationHost {
  readonly where: string
  readonly xl: string
  run: (argv: string[], opts?: { stdin?: string | Buffer, timeoutMs?: number }) => Promise<ExecOutcome>
  domain: (name: string) => Promise<XlListRow | undefined>
  prepareDomain: (def: GuestDefinition, opts: { signal?: AbortSignal, incoming: true }) => Promise<PreparedDomain>
  restoreTaps: (nics: PreparedNic[]) => Promise<void>
  startConsole: (name: string, runDir: string) => Promise<void>
  consoleRunning: (runDir: string) => Promise<boolean>
  stopConsole: (runDir: string) => Promise<void>
  serialize: <T>(key: string, fn: () => Promise<T>) => Promise<T>
}

export interface XenMigrationOptions {
  /** How often the dom0 is asked how the migration goes. Default 1000 ms. */
  pollIntervalMs?: number
  /** How long the destination's listener may take to listen. Default 30 s. */
  listenTimeoutMs?: number
  /** How long polls may keep failing (dom0 unreachable) before giving up. Default 180 s. */
  unreachableGraceMs?: number
  /** After a cancel, how long xl may take to resume the guest before its process group is killed. Default 120 s. */
  cancelGraceMs?: number
}

type SendParams = Parameters<SelfMigration['send']>[2]

export class XenSelfMigration implements SelfMigration {
  private readonly pollMs: number
  private readonly listenTimeoutMs: number
  private readonly graceMs: number
  private readonly cancelGraceMs: number

  constructor (private readonly host: XenMigrationHost, opts: XenMigrationOptions = {}) {
    this.pollMs = opts.pollIntervalMs ?? 1000
    this.listenTimeoutMs = opts.listenTimeoutMs ?? 30_000
    this.graceMs = opts.unreachableGraceMs ?? 180_000
    this.cancelGraceMs = opts.cancelGraceMs ?? 120_000
  }

  private async sh (script: string, args: string[] = [], opts: { stdin?: string | Buffer } = {}): Promise<ExecOutcome> {
    return await this.host.run(['sh', '-c', script, 'sh', ...args], { timeoutMs: 60_000, ...opts })
  }

  private async xl (args: string[]): Promise<ExecOutcome> {
    return await this.host.run([this.host.xl, ...args], { timeoutMs: 120_000 })
  }

  /** A poll of the dom0, retried while it is unreachable (up to graceMs). */
  private async poll (argv: string[]): Promise<DetachedPoll> {
    const until = Date.now() + this.graceMs
    for (;;) {
      try {
        const r = await this.host.run(argv, { timeoutMs: 30_000 })
        return parsePoll(r.stdout)
      } catch (err) {
        if (Date.now() > until) throw err
        await sleep(this.pollMs)
      }
    }
  }

  /** A command that looks dead without an exit status: look once more (its status file may be a moment late). */
  private async settle (st: DetachedPoll, pid: string, rc: string, log: string): Promise<DetachedPoll> {
    await sleep(500)
    const again = await this.poll(pollArgv({ pid, rc, log, offset: Number.MAX_SAFE_INTEGER }))
    return { ...st, ...(again.rc !== undefined ? { rc: again.rc } : {}), alive: again.alive }
  }

  private async destroyIfPresent (name: string): Promise<void> {
    if (await this.host.domain(name) !== undefined) await this.xl(['destroy', name])
  }

  // ---------------------------------------------------------------- destination

  async receive (def: GuestDefinition, p: { listenIp: string, port: number, signal?: AbortSignal, tls?: StreamEnd }): Promise<{ config: string, arrived: Promise<void> }> {
    const name = def.name
    try {
      checkEndpoint(p.listenIp, p.port)
    } catch (err) {
      throw new XenMigrationError({ guest: name, side: 'receive', reason: 'endpoint', detail: (err as Error).message })
    }
    throwIfAborted(p.signal, `incoming migration of guest ${name}`)
    const files = xenMigrationPaths(def.runDir)
    return await this.host.serialize(name, async () => {
      const here = await this.host.domain(name)
      if (here !== undefined) {
        throw new XenMigrationError({ guest: name, side: 'receive', reason: 'exists', detail: `a domain named ${name} already exists on this host (${here.flags})` })
      }
      // Leftovers of an earlier attempt: its listener and half-arrived domain.
      await this.host.run(killGroupArgv(files.recvPid))
      await this.destroyIfPresent(incomingName(name))

      const prepared = await this.host.prepareDomain(def, { incoming: true, ...(p.signal !== undefined ? { signal: p.signal } : {}) })
      const undo = async (): Promise<void> => {
        await this.host.run(killGroupArgv(files.recvPid)).catch(() => undefined)
        await this.dropTls(def.runDir)
        await this.destroyIfPresent(incomingName(name)).catch(() => undefined)
        await this.host.restoreTaps(prepared.nics).catch(() => undefined)
      }
      try {
        const tls = p.tls !== undefined ? await this.writeTls(name, 'receive', def.runDir, p.tls) : undefined
        const argv = receiverArgv({ xl: this.host.xl, listenIp: p.listenIp, port: p.port, ...(tls !== undefined ? { tls } : {}) })
        const started = await this.host.run(detachedArgv({ argv, log: files.recvLog, pid: files.recvPid, rc: files.recvRc }))
        if (started.code !== 0) throw new XenMigrationError({ guest: name, side: 'receive', reason: 'listen', detail: `cannot start the listener: ${started.stderr.trim()}` })
        await this.waitListening(name, p.listenIp, p.port, files, p.signal)
      } catch (err) {
        await undo()
        throw err
      }
      const arrived = this.watchReceive(def, prepared, files, p.signal, undo)
      // The keys leave the dom0 with the stream, however it ended (a failed one through undo).
      // The rejection handler also keeps `arrived` from being unhandled until the caller awaits it.
      arrived.then(async () => { await this.dropTls(def.runDir) }, () => {})
      return { config: prepared.plan.config, arrived }
    })
  }

  /**
   * Writes this end's TLS files (streamTlsPaths; 0600 in a 0700 directory) for the stream:
   * the receiving end is the TLS server, the sending end its client.
   */
  private async writeTls (name: string, side: 'receive' | 'send', runDir: string, tls: StreamEnd): Promise<StreamTlsFiles> {
    const end = side === 'receive' ? 'server' : 'client'
    const f = streamTlsPaths(runDir, end)
    const pem = `${tls.self.key.trimEnd()}\n${tls.self.cert.trimEnd()}\n`
    const a = await this.sh('umask 077 && mkdir -p "$1" && chmod 700 "$1" && cat > "$2"', [f.dir, f.self], { stdin: pem })
    const w = a.code === 0 ? await this.sh('umask 077 && cat > "$1"', [f.peer], { stdin: `${tls.peerCert.trimEnd()}\n` }) : a
    if (w.code !== 0) {
      await this.dropTls(runDir)
      throw new XenMigrationError({ guest: name, side, reason: side === 'receive' ? 'listen' : 'prepare', detail: `cannot write the stream's TLS files in ${f.dir}: ${w.stderr.trim()}`, ...(side === 'send' ? { guestRunningHere: true } : {}) })
    }
    return { self: f.self, peer: f.peer, peerName: end === 'server' ? MIGRATION_CLIENT_CN : MIGRATION_SERVER_CN }
  }

  private async dropTls (runDir: string): Promise<void> {
    await this.sh('rm -rf "$1"', [streamTlsPaths(runDir, 'server').dir]).catch(() => undefined)
  }

  private async waitListening (name: string, ip: string, port: number, files: ReturnType<typeof xenMigrationPaths>, signal: AbortSignal | undefined): Promise<void> {
    const until = Date.now() + this.listenTimeoutMs
    for (;;) {
      throwIfAborted(signal, `incoming migration of guest ${name}`)
      const r = await this.sh('cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; echo "--rc--"; cat "$1" 2>/dev/null; echo "--log--"; tail -n 20 "$2" 2>/dev/null', [files.recvRc, files.recvLog])
      const [tcp = '', rest = ''] = r.stdout.split('--rc--\n')
      const [rc = '', log = ''] = rest.split('--log--\n')
      if (isListening(tcp, ip, port)) return
      if (rc.trim() !== '') {
        throw new XenMigrationError({ guest: name, side: 'receive', reason: 'listen', detail: `the listener on ${ip}:${port} exited ${rc.trim()} before listening`, log })
      }
      if (Date.now() > until) throw new XenMigrationError({ guest: name, side: 'receive', reason: 'listen', detail: `nothing listens on ${ip}:${port} after ${this.listenTimeoutMs} ms`, log })
      await sleep(200)
    }
  }

  /** Resolves once the guest is here (paused); on failure or abort, cleans up (listener, half-arrived domain, taps) and rejects. */
  private async watchReceive (def: GuestDefinition, prepared: PreparedDomain, files: ReturnType<typeof xenMigrationPaths>, signal: AbortSignal | undefined, undo: () => Promise<void>): Promise<void> {
    const name = def.name
    let aborted = signal?.aborted === true
    const onAbort = (): void => { aborted = true }
    signal?.addEventListener('abort', onAbort, { once: true })
    let log = ''
    try {
      for (;;) {
        let st = await this.poll(pollArgv({ pid: files.recvPid, rc: files.recvRc, log: files.recvLog, offset: log.length }))
        log += st.log
        if (st.rc === undefined && !st.alive) {
          const again = await this.settle(st, files.recvPid, files.recvRc, files.recvLog)
          st = { ...again, log: '' }
        }
        if (st.rc !== undefined || !st.alive) {
          const d = await this.host.domain(name)
          // Arrived: the receiver finished, or it reported the domain started and exited or died
          // afterwards (the sender is destroying its copy by then: undoing here would lose the guest).
          // `log` is whole here: the poll that saw the end read the log after the exit status.
          if (d !== undefined && (st.rc === 0 || receiverStartedDomain(log))) {
            await this.afterArrival(def, d)
            return
          }
          await undo()
          throw new XenMigrationError({
            guest: name, side: 'receive', reason: 'stream',
            detail: st.rc === undefined ? 'the receiver was killed' : `xl migrate-receive exited ${st.rc}${st.rc === 0 ? ` but no domain ${name} is here` : ''}`,
            log: receiveLogTail(log)
          })
        }
        if (aborted) {
          await this.host.run(killGroupArgv(files.recvPid))
          // The receiver may have finished in between: a guest that arrived stays (the source has destroyed its copy).
          const d = await this.host.domain(name)
          if (d !== undefined && (await this.poll(pollArgv({ pid: files.recvPid, rc: files.recvRc, log: files.recvLog, offset: 0 }))).rc === 0) {
            await this.afterArrival(def, d)
            return
          }
          await undo()
          throw new CancelledError(`incoming migration of guest ${name}`)
        }
        await sleep(this.pollMs)
      }
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** The balloon target is host-side state (xenstore), set from the config's memory on arrival: put the definition's back. */
  private async afterArrival (def: GuestDefinition, d: XlListRow): Promise<void> {
    const target = def.balloonTargetBytes
    if (target === undefined || !Number.isSafeInteger(target) || target <= 0) return
    const mib = Math.floor(target / MiB)
    if (mib >= def.memoryBytes / MiB || mib === d.memMiB) return
    const r = await this.xl(['mem-set', def.name, `${mib}m`])
    if (r.code !== 0) {
      throw new XenMigrationError({ guest: def.name, side: 'receive', reason: 'balloon', detail: `the guest arrived, but \`xl mem-set ${def.name} ${mib}m\` failed: ${r.stderr.trim()}` })
    }
  }

  // ---------------------------------------------------------------- source

  async send (name: string, runDir: string, p: SendParams): Promise<SelfMigrationResult> {
    const started = Date.now()
    try {
      checkEndpoint(p.destIp, p.port)
    } catch (err) {
      throw new XenMigrationError({ guest: name, side: 'send', reason: 'endpoint', detail: (err as Error).message, guestRunningHere: true })
    }
    throwIfAborted(p.signal, `migration of guest ${name}`)
    const files = xenMigrationPaths(runDir)
    const memMiB = await this.host.serialize(name, async () => await this.startSend(name, runDir, files, p)).catch(async (err: unknown) => {
      if (p.tls !== undefined) await this.dropTls(runDir)
      throw err
    })
    return await this.watchSend(name, runDir, files, memMiB, started, p)
  }

  /** Source: writes the config and TLS files, starts `xl migrate` detached; the guest's memory in MiB. */
  private async startSend (name: string, runDir: string, files: ReturnType<typeof xenMigrationPaths>, p: SendParams): Promise<number> {
    const d = await this.host.domain(name)
    if (d === undefined) throw new XenGuestNotRunningError(name)
    const w = await this.sh('mkdir -p "$1" && cat > "$2" && rm -f "$3"', [runDir, files.sendConfig, files.sendStreamPid], { stdin: p.config })
    if (w.code !== 0) throw new XenMigrationError({ guest: name, side: 'send', reason: 'prepare', detail: `cannot write ${files.sendConfig}: ${w.stderr.trim()}`, guestRunningHere: true })
    const tls = p.tls !== undefined ? await this.writeTls(name, 'send', runDir, p.tls) : undefined
    const rune = senderRune({ destIp: p.destIp, port: p.port, streamPidFile: files.sendStreamPid, ...(tls !== undefined ? { tls } : {}) })
    const argv = senderArgv({ xl: this.host.xl, name, configFile: files.sendConfig, rune })
    const r = await this.host.run(detachedArgv({ argv, log: files.sendLog, pid: files.sendPid, rc: files.sendRc }))
    if (r.code !== 0) throw new XenMigrationError({ guest: name, side: 'send', reason: 'start', detail: `cannot start xl migrate: ${r.stderr.trim()}`, guestRunningHere: true })
    return d.memMiB
  }

  /** Source: follows the detached `xl migrate` to its end (progress, cancel), then says how it ended. */
  private async watchSend (name: string, runDir: string, files: ReturnType<typeof xenMigrationPaths>, memMiB: number, started: number, p: SendParams): Promise<SelfMigrationResult> {
    const emit = (ev: SelfMigrationProgress): void => { try { p.onProgress?.(ev) } catch { /* a listener's failure is not the migration's */ } }
    let aborted = p.signal?.aborted === true
    let cancelSent = false
    let cancelDeadline = 0
    const onAbort = (): void => { aborted = true }
    p.signal?.addEventListener('abort', onAbort, { once: true })
    let log = ''
    let pending = ''
    let phase = 'start'
    let sent: number | undefined
    let reported: number | undefined
    emit({ phase: 'start', message: `xl migrate to ${p.destIp}:${p.port} (guest ${memMiB} MiB)` })
    try {
      let st: DetachedPoll
      for (;;) {
        st = await this.poll(pollArgv({ pid: files.sendPid, rc: files.sendRc, log: files.sendLog, offset: log.length, streamPid: files.sendStreamPid }))
        log += st.log
        pending += st.log
        const lines = pending.replace(/\r/g, '\n').split('\n')
        pending = lines.pop() ?? ''
        if (st.io !== undefined) sent = st.io.wchar
        for (const line of lines) {
          const ev = sendProgressOf(line)
          if (ev === undefined) continue
          phase = ev.phase
          emit({ ...ev, ...(sent !== undefined ? { sentBytes: sent } : {}) })
          reported = sent
        }
        if (phase === 'memory' && sent !== undefined && sent !== reported) {
          emit({ phase: 'memory', sentBytes: sent, message: `${(sent / MiB).toFixed(1)} MiB sent (guest memory ${memMiB} MiB; later rounds resend dirty pages)` })
          reported = sent
        }
        if (st.rc === undefined && !st.alive) st = await this.settle(st, files.sendPid, files.sendRc, files.sendLog)
        if (st.rc !== undefined || !st.alive) break
        if (aborted && !cancelSent && !pastPointOfNoReturn(log)) {
          cancelSent = true
          cancelDeadline = Date.now() + this.cancelGraceMs
          emit({ phase: 'cancel', message: 'cancelling: stopping the stream, xl resumes the guest here' })
          await this.sh('sp=$(cat "$1" 2>/dev/null); if [ -n "$sp" ]; then kill -TERM "$sp" 2>/dev/null; else pid=$(cat "$2" 2>/dev/null); [ -z "$pid" ] || kill -TERM "-$pid" 2>/dev/null; fi; exit 0', [files.sendStreamPid, files.sendPid])
        }
        if (cancelSent && Date.now() > cancelDeadline) {
          await this.host.run(killGroupArgv(files.sendPid))
          cancelDeadline = Number.POSITIVE_INFINITY
        }
        await sleep(this.pollMs)
      }
      const outcome = sendOutcome(log, st.rc)
      if (outcome.kind === 'success') {
        await this.host.stopConsole(runDir).catch(() => undefined)
        const left = await this.host.domain(name)
        if (left !== undefined) {
          throw new XenMigrationError({ guest: name, side: 'send', reason: 'still-here', detail: `xl reported success but domain ${name} is still here (${left.flags})`, log: outcome.tail, guestRunningHere: xlState(left.flags) === 'running' })
        }
        // The transport's bytes at the last look: it lives until xl exits (after destroying the
        // guest here), so the last look normally comes after the whole stream.
        return { totalMs: Date.now() - started, ...(sent !== undefined ? { sentBytes: sent } : {}), log: operatorLog(log) }
      }
      const running = await this.keepRunningHere(name)
      if (aborted && running) throw new CancelledError(`migration of guest ${name}`)
      throw new XenMigrationError({
        guest: name, side: 'send', reason: outcome.kind,
        detail: st.rc === undefined ? 'xl migrate was killed' : `xl migrate exited ${st.rc}`,
        log: outcome.tail, guestRunningHere: running
      })
    } finally {
      p.signal?.removeEventListener('abort', onAbort)
      if (p.tls !== undefined) await this.dropTls(runDir)
    }
  }

  /**
   * After a failed send: the guest must run here. xl resumes it itself on most failures; a
   * guest left renamed `<name>--migratedaway` gets its name back, a paused one is unpaused.
   * Returns whether it runs. (A guest left suspended cannot be resumed with xl.)
   */
  private async keepRunningHere (name: string): Promise<boolean> {
    let d = await this.host.domain(name)
    if (d === undefined) {
      const away = await this.host.domain(migratedAwayName(name))
      if (away === undefined) return false
      await this.xl(['rename', migratedAwayName(name), name])
      d = await this.host.domain(name)
      if (d === undefined) return false
    }
    if (xlState(d.flags) === 'paused') {
      await this.xl(['unpause', name])
      d = await this.host.domain(name)
    }
    return d !== undefined && xlState(d.flags) === 'running'
  }

  // ---------------------------------------------------------------- destination, after arrival

  async resume (name: string, runDir: string): Promise<void> {
    await this.host.serialize(name, async () => {
      const d = await this.host.domain(name)
      if (d === undefined) throw new XenGuestNotRunningError(name)
      if (d.flags.includes('p')) {
        const r = await this.xl(['unpause', name])
        if (r.code !== 0 && (await this.host.domain(name))?.flags.includes('p') !== false) {
          throw new XenMigrationError({ guest: name, side: 'receive', reason: 'resume', detail: `xl unpause ${name} failed: ${r.stderr.trim()}` })
        }
      }
      if (!await this.host.consoleRunning(runDir)) await this.host.startConsole(name, runDir)
    })
  }
}
