/**
 * VirtualWire extenders (effects): certificates, the OpenVPN process of one end, the
 * check that a tunnel is up, and the routes of openvpn.ts's plan — all as commands run ON
 * a host through a `HostShell`: directly (the host agent), in a network namespace
 * (`ip netns exec`, tests and the local driver) or over SSH (`SshConnection`, the
 * controller). Needs on the host: openvpn 2.6, openssl, iproute2, a POSIX sh, and a
 * `ping` (iputils or busybox).
 */
import { hostname } from 'node:os'
import { CancelledError, RemoteCommandError, outputTail, throwIfAborted } from '../../core/errors.ts'
import { commandOptions, localRunner, type CommandResult, type CommandRunner } from '../../core/exec.ts'
import type { OperationOptions } from '../../core/progress.ts'
import type { SshConnection } from '../../core/ssh.ts'
import { ExtenderError } from './errors.ts'
import {
  extenderEnds, extenderFiles, normaliseFingerprint, openVpnConfig, parseOpenVpnStatus, parseRouteGet,
  DEFAULT_UNDERLAY_POLICY, type HostRoutePlan, type OpenVpnEndOptions, type OpenVpnStatus
} from './openvpn.ts'

export type ShellResult = CommandResult

export interface ShellRunOptions {
  input?: string
  /** Resolve with the result instead of throwing ExtenderError on a non-zero exit. */
  allowFailure?: boolean
  signal?: AbortSignal
}

/** Runs commands on one host. */
export interface HostShell {
  /** The host's name, for messages. */
  readonly host: string
  /** Runs argv (no shell interpretation); throws ExtenderError on non-zero exit unless allowFailure. */
  run: (argv: string[], opts?: ShellRunOptions) => Promise<ShellResult>
}

/** A HostShell over a CommandRunner: a failure becomes an ExtenderError naming the host. */
export function hostShell (runner: CommandRunner): HostShell {
  const host = runner.host
  return {
    host,
    run: async (argv, opts = {}) => {
      if (argv.length === 0) throw new ExtenderError(undefined, 'empty command')
      try {
        return await runner.run(argv, commandOptions(opts))
      } catch (err) {
        if (!(err instanceof RemoteCommandError)) throw err
        throw new ExtenderError(undefined, err.reason === 'start'
          ? `${host}: cannot run ${argv[0] ?? ''}: ${err.stderr}`
          : `${host}: \`${err.command}\` exited ${err.status ?? 'abnormally'}: ${outputTail(err.stderr)}`, err)
      }
    }
  }
}

/** Commands on this machine (for the host agent, which runs on the host). */
export function localShell (host: string = hostname()): HostShell {
  return hostShell(localRunner({ host }))
}

/** Commands inside network namespace `ns` of this machine (local-driver hosts: `driverData.ns`). */
export function netnsShell (host: string, ns: string): HostShell {
  return hostShell(localRunner({ host, netns: ns }))
}

/** Commands over an SSH connection (how the controller reaches a host). */
export function sshShell (conn: SshConnection): HostShell {
  return hostShell(conn)
}

const sleep = async (ms: number, signal?: AbortSignal): Promise<void> => {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
    const onAbort = (): void => { clearTimeout(timer); reject(new CancelledError('extender')) }
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

async function readHostFile (sh: HostShell, path: string): Promise<string | undefined> {
  const r = await sh.run(['cat', path], { allowFailure: true })
  return r.code === 0 ? r.stdout : undefined
}

/** Writes a file on the host (mode 600) only when its content differs; true when written. */
async function writeHostFile (sh: HostShell, path: string, content: string): Promise<boolean> {
  if ((await readHostFile(sh, path)) === content) return false
  await sh.run(['sh', '-c', 'umask 077 && cat > "$1.tmp" && mv -f "$1.tmp" "$1"', 'sh', path], { input: content })
  return true
}

// ---------------------------------------------------------------------------
// Certificates

export interface ExtenderCert {
  certPath: string
  keyPath: string
  /** SHA-256 fingerprint of the certificate, OpenVPN form (AB:CD:...). */
  fingerprint: string
}

/**
 * A self-signed P-256 certificate and key for this host's end of extender `name`, made
 * once in `runDir` (`<name>.crt`, `<name>.key`, mode 600) and reused afterwards; returns
 * the paths and the fingerprint the other end must pin.
 */
export async function ensureExtenderCert (sh: HostShell, o: { runDir: string, name: string, signal?: AbortSignal }): Promise<ExtenderCert> {
  const f = extenderFiles(o.runDir, o.name)
  await sh.run(['mkdir', '-p', '-m', '700', o.runDir], { signal: o.signal })
  const have = await sh.run(['sh', '-c', 'test -s "$1" && test -s "$2"', 'sh', f.cert, f.key], { allowFailure: true, signal: o.signal })
  if (have.code !== 0) {
    // Into temporary names first: an interrupted run never leaves a key without its certificate.
    await sh.run(['sh', '-c', [
      'umask 077',
      'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 3650 ' +
        '-subj "/CN=supercloud-extender-$3" -keyout "$2.tmp" -out "$1.tmp" 2>&1',
      'mv -f "$2.tmp" "$2"',
      'mv -f "$1.tmp" "$1"'
    ].join(' && '), 'sh', f.cert, f.key, o.name], { signal: o.signal })
  }
  return { certPath: f.cert, keyPath: f.key, fingerprint: await certFingerprint(sh, f.cert) }
}

/** `openssl x509 -fingerprint -sha256` of a certificate on the host, normalised. */
export async function certFingerprint (sh: HostShell, certPath: string): Promise<string> {
  const r = await sh.run(['openssl', 'x509', '-noout', '-fingerprint', '-sha256', '-in', certPath])
  return normaliseFingerprint(r.stdout)
}

// ---------------------------------------------------------------------------
// The OpenVPN process

/** Pid of the extender's OpenVPN when it runs (the pid file's process, started with our config). */
export async function extenderPid (sh: HostShell, o: { runDir: string, name: string }): Promise<number | undefined> {
  const f = extenderFiles(o.runDir, o.name)
  const pidText = await readHostFile(sh, f.pid)
  const pid = Number(pidText?.trim())
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  const cmdline = await readHostFile(sh, `/proc/${pid}/cmdline`)
  if (cmdline === undefined) return undefined
  const args = cmdline.split('\0')
  return args.some(a => a.endsWith('openvpn')) && args.includes(f.config) ? pid : undefined
}

export interface StartExtenderResult {
  pid: number
  /** False when the same configuration was already running (nothing done). */
  started: boolean
}

/**
 * Starts this end's OpenVPN (daemonised, pid/status/log files in end.runDir). Idempotent:
 * an instance already running with the same configuration is kept; one running with an
 * older configuration is replaced. Returns once the process runs; the tunnel comes up
 * when the other end runs too (waitExtenderUp).
 */
export async function startExtender (sh: HostShell, end: OpenVpnEndOptions, opts: OperationOptions = {}): Promise<StartExtenderResult> {
  const { signal } = opts
  const subject = `extender ${end.name} on ${sh.host}`
  const config = openVpnConfig(end)
  const f = extenderFiles(end.runDir, end.name)
  throwIfAborted(signal, subject)
  await sh.run(['mkdir', '-p', '-m', '700', end.runDir], { signal })
  const changed = await writeHostFile(sh, f.config, config)
  const running = await extenderPid(sh, end)
  if (running !== undefined && !changed) {
    opts.onProgress?.({ subject, phase: 'running', message: `already running (pid ${running})` })
    return { pid: running, started: false }
  }
  if (running !== undefined) {
    opts.onProgress?.({ subject, phase: 'restart', message: 'configuration changed: restarting' })
    await stopExtender(sh, end)
  }
  opts.onProgress?.({ subject, phase: 'start', message: `openvpn --config ${f.config}` })
  await sh.run(['rm', '-f', f.pid], { signal })
  const logStart = (await readHostFile(sh, f.log))?.length ?? 0
  await sh.run(['openvpn', '--config', f.config, '--daemon', `sc-extender-${end.name}`], { signal })
  for (let i = 0; i < 50; i++) {
    const pid = await extenderPid(sh, end)
    if (pid !== undefined) return { pid, started: true }
    await sleep(100, signal)
  }
  const log = ((await readHostFile(sh, f.log)) ?? '').slice(logStart)
  throw new ExtenderError(end.name, `openvpn did not stay up on ${sh.host}: ${outputTail(log)}`)
}

/** Stops this end's OpenVPN (TERM, then KILL after 5 s); the tun device goes with it. True when one was running. */
export async function stopExtender (sh: HostShell, o: { runDir: string, name: string, signal?: AbortSignal }): Promise<boolean> {
  const f = extenderFiles(o.runDir, o.name)
  const pid = await extenderPid(sh, o)
  if (pid !== undefined) {
    await sh.run(['kill', '-TERM', String(pid)], { allowFailure: true })
    let gone = false
    for (let i = 0; i < 50 && !gone; i++) {
      await sleep(100, o.signal)
      gone = (await readHostFile(sh, `/proc/${pid}/cmdline`)) === undefined
    }
    if (!gone) await sh.run(['kill', '-KILL', String(pid)], { allowFailure: true })
  }
  await sh.run(['rm', '-f', f.pid], { allowFailure: true })
  return pid !== undefined
}

export interface ExtenderState {
  running: boolean
  pid?: number
  /** Traffic counters from the status file, when it exists. */
  status?: OpenVpnStatus
}

export async function extenderState (sh: HostShell, o: { runDir: string, name: string }): Promise<ExtenderState> {
  const pid = await extenderPid(sh, o)
  const text = await readHostFile(sh, extenderFiles(o.runDir, o.name).status)
  const status = text !== undefined ? parseOpenVpnStatus(text) : undefined
  const s: ExtenderState = { running: pid !== undefined }
  if (pid !== undefined) s.pid = pid
  if (status !== undefined) s.status = status
  return s
}

/** Pings `address` once from the host (iputils ping, else busybox's). */
async function pingOnce (sh: HostShell, address: string, signal?: AbortSignal): Promise<boolean> {
  const r = await sh.run(['sh', '-c', 'if command -v ping >/dev/null 2>&1; then ping -c 1 -W 1 "$1"; else busybox ping -c 1 -W 1 "$1"; fi', 'sh', address], { allowFailure: true, signal })
  return r.code === 0
}

/**
 * Waits until this end's tunnel is up: the tun device carries tunnelLocal and the peer's
 * tunnel address answers a ping. Fails early when OpenVPN exits; ExtenderError with the
 * log's tail on timeout (default 30 s).
 */
export async function waitExtenderUp (sh: HostShell, end: OpenVpnEndOptions, opts: OperationOptions & { timeoutMs?: number } = {}): Promise<void> {
  const subject = `extender ${end.name} on ${sh.host}`
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  const f = extenderFiles(end.runDir, end.name)
  let phase = 'process'
  while (true) {
    throwIfAborted(opts.signal, subject)
    if ((await extenderPid(sh, end)) === undefined) {
      const log = (await readHostFile(sh, f.log)) ?? ''
      throw new ExtenderError(end.name, `openvpn is not running on ${sh.host}: ${outputTail(log)}`)
    }
    phase = 'address'
    const addr = await sh.run(['ip', '-4', '-o', 'addr', 'show', 'dev', end.dev], { allowFailure: true, signal: opts.signal })
    if (addr.code === 0 && new RegExp(`inet ${end.tunnelLocal.replace(/\./g, '\\.')}[ /]`).test(addr.stdout)) {
      phase = 'peer'
      if (await pingOnce(sh, end.tunnelRemote, opts.signal)) {
        opts.onProgress?.({ subject, phase: 'up', message: `${end.dev} ${end.tunnelLocal} reaches ${end.tunnelRemote}`, fraction: 1 })
        return
      }
    }
    if (Date.now() > deadline) {
      const log = (await readHostFile(sh, f.log)) ?? ''
      throw new ExtenderError(end.name, `tunnel not up on ${sh.host} within ${opts.timeoutMs ?? 30_000} ms (waiting for ${phase === 'peer' ? `a reply from ${end.tunnelRemote}` : `${end.tunnelLocal} on ${end.dev}`}): ${outputTail(log, 3)}`)
    }
    opts.onProgress?.({ subject, phase: 'wait', message: `waiting for ${phase}` })
    await sleep(250, opts.signal)
  }
}

// ---------------------------------------------------------------------------
// Both ends at once (what the controller does for one extender)

export interface ExtenderHostSide {
  shell: HostShell
  /** Underlay address of the host (its site address for local-driver hosts). */
  ip: string
  port: number
  dev: string
  /** Directory on the host for the extender's files. */
  runDir: string
  /** Where the other end sends to reach this host, when not `ip` (a public address across a NAT). */
  reachedAt?: string
}

/**
 * Certificates on both hosts, fingerprints exchanged, both OpenVPN ends started, and
 * both waited for. Idempotent (a running, unchanged extender is left alone).
 * Returns the two ends' options (for stop/state/wait later).
 */
export async function connectExtender (o: { name: string, index: number, a: ExtenderHostSide, b: ExtenderHostSide, timeoutMs?: number } & OperationOptions): Promise<{ a: OpenVpnEndOptions, b: OpenVpnEndOptions }> {
  const opts: OperationOptions = {}
  if (o.signal !== undefined) opts.signal = o.signal
  if (o.onProgress !== undefined) opts.onProgress = o.onProgress
  const [ca, cb] = await Promise.all([o.a, o.b].map(async s => await ensureExtenderCert(s.shell, { runDir: s.runDir, name: o.name, ...(o.signal !== undefined ? { signal: o.signal } : {}) })))
  if (ca === undefined || cb === undefined) throw new ExtenderError(o.name, 'certificates missing')
  const side = (s: ExtenderHostSide, c: ExtenderCert): Parameters<typeof extenderEnds>[0]['a'] =>
    ({ ip: s.ip, port: s.port, certPath: c.certPath, keyPath: c.keyPath, fingerprint: c.fingerprint, dev: s.dev, runDir: s.runDir })
  const ends = extenderEnds({ name: o.name, index: o.index, a: side(o.a, ca), b: side(o.b, cb) })
  // Each end listens on its own address and sends to where the other is reachable from it.
  if (o.b.reachedAt !== undefined) ends.a.remote = { ip: o.b.reachedAt, port: o.b.port }
  if (o.a.reachedAt !== undefined) ends.b.remote = { ip: o.a.reachedAt, port: o.a.port }
  await Promise.all([startExtender(o.a.shell, ends.a, opts), startExtender(o.b.shell, ends.b, opts)])
  const wait = { ...opts, ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}) }
  await Promise.all([waitExtenderUp(o.a.shell, ends.a, wait), waitExtenderUp(o.b.shell, ends.b, wait)])
  return ends
}

// ---------------------------------------------------------------------------
// Routes

function tunnelDevs (plan: HostRoutePlan): Set<string> {
  const devs = new Set<string>()
  for (const r of plan.routes) {
    const i = r.indexOf('dev')
    const d = i >= 0 ? r[i + 1] : undefined
    if (d !== undefined) devs.add(d)
  }
  return devs
}

/** The underlay next hop of `endpoint` as the marked OpenVPN socket sees it, or undefined when it leads into a tunnel. */
async function underlayRoute (sh: HostShell, plan: HostRoutePlan, endpoint: string, mark: number): Promise<{ via?: string, dev: string } | undefined> {
  const r = await sh.run(['ip', '-4', 'route', 'get', endpoint, 'mark', String(mark)], { allowFailure: true })
  const route = r.code === 0 ? parseRouteGet(r.stdout) : undefined
  if (route === undefined || tunnelDevs(plan).has(route.dev)) return undefined
  return route
}

/**
 * Applies one host's plan from extenderRoutes(): on a gateway, IPv4 forwarding on, the
 * underlay pins (table + fwmark rule) first, then every route with `ip route replace`.
 * Idempotent.
 */
export async function applyExtenderRoutes (sh: HostShell, plan: HostRoutePlan, opts: OperationOptions = {}): Promise<void> {
  const subject = `extender routes on ${sh.host}`
  throwIfAborted(opts.signal, subject)
  if (plan.gateway && plan.routes.length > 0) {
    await sh.run(['sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward'])
    const policy = plan.policy ?? DEFAULT_UNDERLAY_POLICY
    for (const ep of plan.underlayPins) {
      let route = await underlayRoute(sh, plan, ep, policy.mark)
      if (route === undefined) {
        // Our own routes (from an earlier apply without the pin) hide the underlay: take them out and look again.
        await removeRoutes(sh, plan)
        route = await underlayRoute(sh, plan, ep, policy.mark)
      }
      if (route === undefined) throw new ExtenderError(undefined, `${sh.host}: no underlay route to the extender peer ${ep}`)
      await sh.run(['ip', 'route', 'replace', `${ep}/32`, ...(route.via !== undefined ? ['via', route.via] : []), 'dev', route.dev, 'table', String(policy.table)])
    }
    const rules = await sh.run(['ip', '-4', 'rule', 'show', 'pref', String(policy.pref)], { allowFailure: true })
    if (rules.stdout.trim() === '') {
      await sh.run(['ip', '-4', 'rule', 'add', 'pref', String(policy.pref), 'fwmark', String(policy.mark), 'lookup', String(policy.table)])
    }
  }
  for (const r of plan.routes) {
    opts.onProgress?.({ subject, phase: 'route', message: `ip route replace ${r.join(' ')}` })
    await sh.run(['ip', 'route', 'replace', ...r], { signal: opts.signal })
  }
}

async function removeRoutes (sh: HostShell, plan: HostRoutePlan): Promise<void> {
  for (const r of plan.routes) await sh.run(['ip', 'route', 'del', ...r], { allowFailure: true })
}

/** Removes what applyExtenderRoutes added (forwarding is left as it is). Idempotent. */
export async function removeExtenderRoutes (sh: HostShell, plan: HostRoutePlan): Promise<void> {
  await removeRoutes(sh, plan)
  if (plan.gateway && plan.policy !== undefined) {
    await sh.run(['ip', '-4', 'rule', 'del', 'pref', String(plan.policy.pref)], { allowFailure: true })
    await sh.run(['ip', '-4', 'route', 'flush', 'table', String(plan.policy.table)], { allowFailure: true })
  }
}
