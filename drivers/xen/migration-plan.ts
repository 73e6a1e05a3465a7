/**
 * Pure parts of Xen live migration (drivers/xen/migration.ts runs them): the commands of
 * both ends, the shell that runs a command detached in the dom0 (pid, log, exit status in
 * files, so it survives a dropped SSH connection and can be polled), and parsers of what
 * those leave behind (`xl migrate`'s log, /proc/net/tcp).
 *
 * The stream: the destination runs `socat OPENSSL-LISTEN:<port>,bind=<ip>,<tls> EXEC:'xl
 * migrate-receive -p'` (one connection, TLS with the migration's pinned certificates: see
 * StreamTlsFiles; in clear text, asked for explicitly, `TCP-LISTEN` with nofork, xl's
 * stdin/stdout then being the socket itself). The source runs `xl -vvv migrate -s '' -C
 * <config> <name> '<rune>'`: with an empty `-s`, xl runs the rune with `sh -c` as the transport
 * (its stdin is the stream, its stdout the receiver's replies). The rune is `echo $$ > <pid>;
 * exec socat -b 262144 - OPENSSL:<ip>:<port>,<tls>`: the socat's pid lets us read its /proc/<pid>/io while it runs (xl prints no byte counts: it
 * hides libxc's progress while it migrates) and kill it to cancel (xl then takes its own
 * failure path and resumes the guest). `-b 262144`: socat's default 8 KiB reads cost a
 * syscall per 8 KiB, which a TCG dom0 pays dearly (measured on a 96 MiB guest: busybox nc
 * 51-59 s, socat 8 KiB 20-44 s, socat 256 KiB 8-11 s; a `dd` counting the bytes in front of
 * socat made it 18 s, so the byte count is socat's /proc io instead).
 *
 * What xl 4.17 prints with -vvv (measured): no per-round lines (libxc's "Frames iteration N"
 * is progress output, which xl hides during a migration), but "xc: info: Saving domain" (the
 * copy starts), libxl's "issuing PVH/HVM suspend request" / "guest has suspended" (the last
 * round begins), "libxl-save-helper: debug: complete r=0" (the memory stream is done), then
 * "migration sender: Target has acknowledged transfer." / "Giving target permission to
 * start." / "Target reports successful startup." / "Migration successful.".
 */
import { isIP } from 'node:net'
import type { SelfMigrationProgress } from '../hypervisor.ts'
import { shq } from './config.ts'

/** Files of a migration in the guest's runDir in the dom0. */
export interface XenMigrationPaths {
  /** The destination's domain configuration, as the source sends it (`xl migrate -C`). */
  sendConfig: string
  sendLog: string
  sendPid: string
  sendRc: string
  /** pid of the transport's socat (its /proc/<pid>/io while it runs; killed to cancel). */
  sendStreamPid: string
  recvLog: string
  recvPid: string
  recvRc: string
}

export function xenMigrationPaths (runDir: string): XenMigrationPaths {
  return {
    sendConfig: `${runDir}/migrate-send.cfg`,
    sendLog: `${runDir}/migrate-send.log`,
    sendPid: `${runDir}/migrate-send.pid`,
    sendRc: `${runDir}/migrate-send.rc`,
    sendStreamPid: `${runDir}/migrate-send-stream.pid`,
    recvLog: `${runDir}/migrate-recv.log`,
    recvPid: `${runDir}/migrate-recv.pid`,
    recvRc: `${runDir}/migrate-recv.rc`
  }
}

/** Temporary domain names xl uses during a migration. */
export const incomingName = (name: string): string => `${name}--incoming`
export const migratedAwayName = (name: string): string => `${name}--migratedaway`

/** Throws a plain Error for an endpoint we cannot put on a command line. */
export function checkEndpoint (ip: string, port: number): 4 | 6 {
  const v = isIP(ip)
  if (v !== 4 && v !== 6) throw new Error(`'${ip}' is not an IP address`)
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port ${port} is out of range`)
  return v
}

/**
 * One end's TLS files in the dom0 (written by migration.ts, mode 0600 in a 0700 directory):
 * `self` holds this end's private key and certificate (PEM, key first), `peer` the other end's
 * certificate, its only trust anchor (pinned); `peerName` is the common name it must carry.
 */
export interface StreamTlsFiles {
  self: string
  peer: string
  peerName: string
}

/** The directory of a migration's TLS files under the guest's runDir, and the two files each end writes. */
export function streamTlsPaths (runDir: string, end: 'server' | 'client'): { dir: string, self: string, peer: string } {
  const dir = `${runDir}/mig-tls`
  return { dir, self: `${dir}/${end}.pem`, peer: `${dir}/${end === 'server' ? 'client' : 'server'}.crt` }
}

/** socat OPENSSL options: our certificate, the peer's pinned, verified, with its name checked. */
function tlsOptions (t: StreamTlsFiles): string {
  for (const v of [t.self, t.peer, t.peerName]) {
    if (/[\s,:!'"\\]/.test(v) || v === '') throw new Error(`'${v}' cannot be used inside a socat address`)
  }
  return `cert=${t.self},cafile=${t.peer},verify=1,commonname=${t.peerName}`
}

/** socat address of the destination's listener (TLS when `tls` is given). */
function listenAddress (ip: string, port: number, tls: StreamTlsFiles | undefined): string {
  const v = checkEndpoint(ip, port)
  if (tls !== undefined) return `OPENSSL-LISTEN:${port},${v === 4 ? `bind=${ip},pf=ip4` : `bind=[${ip}],pf=ip6,ipv6only=1`},reuseaddr,${tlsOptions(tls)}`
  return v === 4 ? `TCP4-LISTEN:${port},bind=${ip},reuseaddr` : `TCP6-LISTEN:${port},bind=[${ip}],reuseaddr,ipv6only=1`
}

/**
 * Destination: one connection on listenIp:port, handed to `xl migrate-receive -p` (the guest
 * stays paused). In clear text xl gets the socket itself (`nofork`); over TLS socat relays
 * between the TLS session and xl's stdin/stdout, and a client without the pinned certificate
 * fails the handshake before xl sees a byte.
 */
export function receiverArgv (p: { xl: string, listenIp: string, port: number, tls?: StreamTlsFiles }): string[] {
  if (/[\s,:!]/.test(p.xl)) throw new Error(`xl path '${p.xl}' cannot be used inside a socat EXEC address`)
  if (p.tls !== undefined) return ['socat', '-b', String(STREAM_BUFFER_BYTES), listenAddress(p.listenIp, p.port, p.tls), `EXEC:${p.xl} migrate-receive -p`]
  return ['socat', listenAddress(p.listenIp, p.port, undefined), `EXEC:${p.xl} migrate-receive -p,nofork`]
}

/** socat's buffer: one read/write per 256 KiB instead of 8 KiB (syscalls are dear under TCG). */
export const STREAM_BUFFER_BYTES = 262144

/** Source: the transport command xl runs (`sh -c <rune>`): socat to the destination, its pid recorded. */
export function senderRune (p: { destIp: string, port: number, streamPidFile: string, tls?: StreamTlsFiles }): string {
  const v = checkEndpoint(p.destIp, p.port)
  const target = p.tls !== undefined
    ? `OPENSSL:${v === 4 ? p.destIp : `[${p.destIp}]`}:${p.port},pf=ip${v},${tlsOptions(p.tls)}`
    : v === 4 ? `TCP4:${p.destIp}:${p.port}` : `TCP6:[${p.destIp}]:${p.port}`
  return `echo $$ > ${shq(p.streamPidFile)}; exec socat -b ${STREAM_BUFFER_BYTES} - ${p.tls !== undefined ? shq(target) : target}`
}

/** Source: `xl -vvv migrate -s '' -C <config> <name> <rune>` (-vvv: libxl's suspend lines mark the switchover). */
export function senderArgv (p: { xl: string, name: string, configFile: string, rune: string }): string[] {
  return [p.xl, '-vvv', 'migrate', '-s', '', '-C', p.configFile, p.name, p.rune]
}

/**
 * argv (for XenExecutor.run) that starts `argv` detached in its own session (so its process
 * group can be killed), stdin from /dev/null, stdout discarded, stderr to `log`, its exit
 * status into `rc` when it ends, the session leader's pid (= the process group) into `pid`.
 * Returns at once.
 */
export function detachedArgv (p: { argv: string[], log: string, pid: string, rc: string }): string[] {
  const script = 'log=$1 pidf=$2 rcf=$3; shift 3; rm -f "$rcf" "$pidf"; : > "$log"; cd / || exit 1; ' +
    'setsid sh -c \'rcf=$1 log=$2; shift 2; "$@" </dev/null >/dev/null 2>>"$log"; echo $? > "$rcf.tmp"; mv -f "$rcf.tmp" "$rcf"\' sh "$rcf" "$log" "$@" </dev/null >/dev/null 2>&1 & ' +
    'echo $! > "$pidf"'
  return ['sh', '-c', script, 'sh', p.log, p.pid, p.rc, ...p.argv]
}

/** Kills the process group whose leader's pid is in `pidFile` (TERM, then KILL after ~3 s). */
export function killGroupArgv (pidFile: string): string[] {
  return ['sh', '-c',
    'pid=$(cat "$1" 2>/dev/null); [ -n "$pid" ] || exit 0; kill -TERM "-$pid" 2>/dev/null || exit 0; ' +
    'i=0; while kill -0 "-$pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL "-$pid" 2>/dev/null; exit 0',
    'sh', pidFile]
}

/** One look at a detached command (see pollArgv). */
export interface DetachedPoll {
  /** Exit status once it ended. */
  rc?: number
  /** The session leader still runs. */
  alive: boolean
  /** rchar / wchar of the stream process, while it runs. */
  io?: { rchar: number, wchar: number }
  /** Log bytes from the offset asked for. */
  log: string
}

/** argv printing a DetachedPoll (parsePoll): exit status, liveness, stream io, log from `offset`. */
export function pollArgv (p: { pid: string, rc: string, log: string, offset: number, streamPid?: string }): string[] {
  const script = 'pidf=$1 rcf=$2 log=$3 off=$4 spf=$5; ' +
    // Liveness before the exit status: read the other way round, a command ending in between looks killed.
    'pid=$(cat "$pidf" 2>/dev/null); a=0; [ -n "$pid" ] && [ -e "/proc/$pid/status" ] && ! grep -q "^State:.*Z" "/proc/$pid/status" 2>/dev/null && a=1; ' +
    'echo "rc=$(cat "$rcf" 2>/dev/null)"; echo "alive=$a"; ' +
    'io=; if [ -n "$spf" ]; then sp=$(cat "$spf" 2>/dev/null); [ -n "$sp" ] && io=$(grep -E "^(rchar|wchar):" "/proc/$sp/io" 2>/dev/null | tr "\\n" " "); fi; echo "io=$io"; ' +
        'echo "--log--"; tail -c "+$((off + 1))" "$log" 2>/dev/null; exit 0'
  return ['sh', '-c', script, 'sh', p.pid, p.rc, p.log, String(Math.max(0, Math.floor(p.offset))), p.streamPid ?? '']
}

export function parsePoll (text: string): DetachedPoll {
  const at = text.indexOf('--log--\n')
  const head = at >= 0 ? text.slice(0, at) : text
  const log = at >= 0 ? text.slice(at + '--log--\n'.length) : ''
  const field = (k: string): string => (new RegExp(`^${k}=(.*)$`, 'm').exec(head)?.[1] ?? '').trim()
  const out: DetachedPoll = { alive: field('alive') === '1', log }
  const rc = field('rc')
  if (/^\d+$/.test(rc)) out.rc = Number(rc)
  const io = field('io')
  const r = /rchar:\s*(\d+)/.exec(io)
  const w = /wchar:\s*(\d+)/.exec(io)
  if (r !== null && w !== null) out.io = { rchar: Number(r[1]), wchar: Number(w[1]) }
  return out
}

/** True when /proc/net/tcp or tcp6 text shows a socket listening on ip:port. */
export function isListening (procNetTcp: string, ip: string, port: number): boolean {
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`
  const v = isIP(ip)
  const hex = v === 4 ? ipv4Hex(ip) : v === 6 ? ipv6Hex(ip) : undefined
  if (hex === undefined) return false
  for (const line of procNetTcp.split('\n')) {
    const f = line.trim().split(/\s+/)
    const local = f[1]
    if (f[3] !== '0A' || local === undefined || !local.endsWith(want)) continue
    const addr = local.slice(0, local.length - want.length).toUpperCase()
    if (addr === hex || /^0+$/.test(addr)) return true
  }
  return false
}

/** /proc/net/tcp's address form of an IPv4 address (host byte order, x86: little-endian). */
function ipv4Hex (ip: string): string {
  return ip.split('.').map(n => Number(n).toString(16).toUpperCase().padStart(2, '0')).reverse().join('')
}

/** /proc/net/tcp6's address form: four 32-bit words, each little-endian. */
function ipv6Hex (ip: string): string | undefined {
  const [head = '', tail] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === undefined || tail === '' ? [] : tail.split(':')
  if (h.concat(t).some(g => g.includes('.'))) return undefined
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  if (groups.length !== 8) return undefined
  const bytes = groups.flatMap(g => { const n = parseInt(g, 16); return [n >> 8, n & 0xff] })
  let out = ''
  for (let i = 0; i < 16; i += 4) out += bytes.slice(i, i + 4).reverse().map(b => b.toString(16).toUpperCase().padStart(2, '0')).join('')
  return out
}

/** Progress event for one line of `xl -vvv migrate`'s stderr, or undefined for lines that say nothing new. */
export function sendProgressOf (line: string): SelfMigrationProgress | undefined {
  const l = line.trim()
  if (/^xc: info: Saving domain \d+/.test(l)) return { phase: 'memory', iteration: 0, message: 'copying memory while the guest runs (pre-copy rounds)' }
  if (/issuing .*suspend request/.test(l)) return { phase: 'switchover', message: 'suspending the guest for the last round' }
  if (/guest has suspended/.test(l)) return { phase: 'switchover', message: 'guest suspended, sending its last dirty pages and device state' }
  if (/^libxl-save-helper: debug: complete r=0/.test(l)) return { phase: 'switchover', message: 'memory stream complete' }
  if (/^migration sender: Target has acknowledged transfer/.test(l)) return { phase: 'handover', message: 'destination holds the guest; handing over' }
  if (/^migration sender: Target reports successful startup/.test(l)) return { phase: 'arrived', message: 'guest is at the destination (paused)' }
  return undefined
}

export type SendOutcomeKind =
  /** `Migration successful.`: the guest is at the destination, destroyed here. */
  | 'success'
  /** The stream failed before the hand-over; xl resumed the guest here. */
  | 'resumed'
  /** The guest did not suspend in time; it was not suspended (still runs here). */
  | 'suspend-timeout'
  /** The destination failed to start it; xl resumed it here. */
  | 'target-failed'
  /** After the point of no return: state undefined (xl: "CHECK AT BOTH ENDS"). */
  | 'handshake-failed'
  /** xl ended without one of its final lines (killed, or failed before the stream). */
  | 'unknown'

export interface SendOutcome {
  kind: SendOutcomeKind
  /** Lines of xl's log worth showing an operator (no libxl debug chatter), last ones. */
  tail: string
}

/** xl's log without its debug lines (libxl event machinery, xencall statistics). */
export function operatorLog (log: string, maxLines = 40): string {
  const lines = log.replace(/\r/g, '\n').split('\n').filter(l => l.trim() !== '' && !/^(libxl|xencall:buffer|xenforeignmemory|xentoollog): debug: /.test(l) && !/^libxl: debug: /.test(l))
  return lines.slice(-maxLines).join('\n')
}

/** How `xl migrate` ended, from its log (and exit status). */
export function sendOutcome (log: string, rc: number | undefined): SendOutcome {
  const tail = operatorLog(log, 25)
  const has = (re: RegExp): boolean => re.test(log)
  if (rc === 0 && has(/^Migration successful\.$/m)) return { kind: 'success', tail }
  if (has(/Migration failed during final handshake/)) return { kind: 'handshake-failed', tail }
  if (has(/^Migration failed due to problems at target\./m)) return { kind: 'target-failed', tail }
  if (has(/^Migration failed, failed to suspend at sender\./m)) return { kind: 'suspend-timeout', tail }
  if (has(/^Migration failed, resuming at sender\./m)) return { kind: 'resumed', tail }
  return { kind: 'unknown', tail }
}

/** True once xl has told the destination to start the guest: cancelling can no longer keep it here. */
export function pastPointOfNoReturn (log: string): boolean {
  return /^migration sender: Target has acknowledged transfer\./m.test(log)
}

/**
 * True once `xl migrate-receive` reported the domain started (renamed to its own name and, with
 * -p, left paused): the receiver's point of no return. The sender destroys its copy after
 * "Target reports successful startup", so a receiver that dies or exits non-zero after this
 * line still leaves the only copy of the guest here. (xl spells it "successsfully".)
 */
export function receiverStartedDomain (log: string): boolean {
  return /^migration target: Domain started success+fully/m.test(log)
}

/** Lines of `xl migrate-receive`'s log worth showing (its own lines and errors). */
export function receiveLogTail (log: string, maxLines = 25): string {
  return operatorLog(log, maxLines)
}
