/**
 * SSH connection to a host (ssh2). The only channel between the controller and a host:
 * commands run through exec channels, files go over SFTP, the host agent is reached
 * through a forwarded unix socket (direct-streamlocal), never an open TCP port.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { Duplex } from 'node:stream'
import { Client, type ClientChannel, type ConnectConfig } from 'ssh2'
import { HostAuthError, HostKeyMismatchError, HostUnreachableError, CancelledError, throwIfAborted } from './errors.ts'
import { fingerprintOf, knownHostsFingerprints, publicKeyLine } from './host-keys.ts'
import { collectCommand, commandOptions, shq, type CommandEnd, type CommandOptions, type CommandResult, type CommandRunner } from './exec.ts'

export { shq } from './exec.ts'

/** How the controller reaches a host over SSH. */
export interface SshEndpoint {
  host: string
  port: number
  username: string
  /** Path of the private key file on the controller's machine. */
  privateKeyPath: string
  /** Path of a known_hosts-style file naming the host's key (the local driver writes it from the key it made). */
  hostKeyPath?: string
  /**
   * SHA256 fingerprints (`SHA256:...`) one of which the host must present, and where they come
   * from (for messages): the spec's `ssh.hostKey`, an EC2 instance's console output.
   */
  hostKeys?: { fingerprints: string[], source: string }
  /**
   * A command whose stdin/stdout is a byte stream to host:port (like OpenSSH ProxyCommand),
   * e.g. ['ip','netns','exec','sc1234-wan','socat','-','TCP:198.18.1.10:22'].
   * Used by the local driver so the root namespace needs no routes to the sites.
   */
  proxyCommand?: string[]
  /**
   * A host that answers slowly (an emulated machine, e.g. the local Xen host under TCG): longer
   * connect timeout and keepalive allowance than the defaults (15 s; 5 s x 3).
   */
  slow?: { timeoutMs: number, keepaliveIntervalMs: number, keepaliveCountMax: number }
}

export type ExecResult = CommandResult

export interface ExecOptions {
  signal?: AbortSignal
  /** Data written to the command's stdin, then EOF. */
  stdin?: string | Buffer
  /** Do not throw on non-zero exit. */
  allowFailure?: boolean
  timeoutMs?: number
}

/** Wraps a ProxyCommand child process as a duplex byte stream for ssh2's `sock` option. */
function proxyStream (argv: string[]): { stream: Duplex, child: ChildProcess } {
  const [cmd, ...args] = argv
  if (cmd === undefined) throw new Error('empty proxyCommand')
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const stream = new Duplex({
    read () { child.stdout?.resume() },
    // A write to a proxy that already exited is dropped: the failure surfaces once, as the end of its output.
    write (chunk: Buffer, _enc, cb) {
      if (child.stdin === null || child.stdin.destroyed || child.exitCode !== null) { cb(); return }
      child.stdin.write(chunk, () => cb())
    },
    final (cb) { child.stdin?.end(); cb() },
    destroy (err, cb) { child.kill('SIGKILL'); cb(err) }
  })
  child.stdout?.on('data', (d: Buffer) => { if (!stream.push(d)) child.stdout?.pause() })
  child.stdout?.on('end', () => stream.push(null))
  child.on('error', err => stream.destroy(err))
  child.on('exit', code => {
    if (code !== 0 && code !== null && !stream.destroyed) stream.destroy(new Error(`proxy command exited ${code}: ${stderr.trim()}`))
  })
  child.stdin?.on('error', () => { /* reported through exit */ })
  return { stream, child }
}

/**
 * The controller's memory of host keys (the state store): the key a host presented at first
 * contact is pinned and every later connection must present it.
 */
export interface HostKeyPins {
  /** The key pinned for a host, or undefined before first contact. */
  pinned: (host: string) => PinnedHostKey | undefined
  /** Pins (or re-pins, after the endpoint's own keys vouched for it) the key a host presented. */
  pin: (host: string, fingerprint: string, publicKey: string) => void
}

/** A pinned host key: its fingerprint, the key itself (`type base64`, a known_hosts line's end) and when it was pinned. */
export interface PinnedHostKey {
  fingerprint: string
  publicKey: string
  since: string
}

/** What the host must present: the endpoint's own keys first, else the pin, else nothing yet (first contact). */
export function expectedHostKeys (hostName: string, ep: SshEndpoint, knownHostsText: string | undefined, pins: HostKeyPins | undefined): { fingerprints: string[], source: string, remedy: string } | undefined {
  const own = [...ep.hostKeys?.fingerprints ?? [], ...(knownHostsText !== undefined ? knownHostsFingerprints(knownHostsText) : [])]
  if (own.length > 0) {
    const source = [ep.hostKeys !== undefined ? ep.hostKeys.source : undefined, knownHostsText !== undefined ? `the host key file ${ep.hostKeyPath ?? ''}` : undefined].filter(s => s !== undefined).join(' and ')
    return { fingerprints: own, source, remedy: `correct ${source} (or re-create the host)` }
  }
  const p = pins?.pinned(hostName)
  if (p !== undefined) return { fingerprints: [p.fingerprint], source: `pinned at first contact, ${p.since}`, remedy: `run \`supercloud forget-host-key ${hostName}\` (the next connection pins the key it meets), or put the new key in the host's ssh.hostKey` }
  return undefined
}

export class SshConnection implements CommandRunner {
  readonly hostName: string
  private readonly client: Client
  private proxy?: ChildProcess
  private closed = false

  private constructor (hostName: string, client: Client) {
    this.hostName = hostName
    this.client = client
  }

  /** Opens an authenticated connection; typed errors for unreachable host and refused key. */
  static async connect (hostName: string, ep: SshEndpoint, opts: { signal?: AbortSignal, timeoutMs?: number, keepaliveIntervalMs?: number, keepaliveCountMax?: number, pins?: HostKeyPins } = {}): Promise<SshConnection> {
    let privateKey: Buffer
    try {
      privateKey = await readFile(ep.privateKeyPath)
    } catch (err) {
      throw new HostAuthError(hostName, `cannot read private key ${ep.privateKeyPath}`, err)
    }
    const knownHosts = ep.hostKeyPath !== undefined ? await readFile(ep.hostKeyPath, 'utf8').catch(() => '') : undefined
    const expected = expectedHostKeys(hostName, ep, knownHosts, opts.pins)
    let seen: string | undefined
    let seenKey = ''
    let mismatch: HostKeyMismatchError | undefined
    const client = new Client()
    const conn = new SshConnection(hostName, client)
    const cfg: ConnectConfig = {
      host: ep.host,
      port: ep.port,
      username: ep.username,
      privateKey,
      readyTimeout: opts.timeoutMs ?? ep.slow?.timeoutMs ?? 15000,
      // A host that does not answer keepalives for interval x count is taken as gone; an
      // emulated host (a Xen dom0 under TCG) on a loaded machine needs a longer allowance.
      keepaliveInterval: opts.keepaliveIntervalMs ?? ep.slow?.keepaliveIntervalMs ?? 5000,
      keepaliveCountMax: opts.keepaliveCountMax ?? ep.slow?.keepaliveCountMax ?? 3
    }
    // Every connection checks the key: against the endpoint's own keys or the pin; the first
    // contact with a host that has neither pins the key it presents.
    cfg.hostVerifier = (key: Buffer) => {
      seen = fingerprintOf(key)
      seenKey = publicKeyLine(key)
      if (expected === undefined || expected.fingerprints.includes(seen)) return true
      mismatch = new HostKeyMismatchError(hostName, expected.fingerprints.join(' or '), seen, expected.source, expected.remedy)
      return false
    }
    if (ep.proxyCommand !== undefined) {
      const p = proxyStream(ep.proxyCommand)
      conn.proxy = p.child
      cfg.sock = p.stream
    }
    await new Promise<void>((resolve, reject) => {
      let settled = false
      const onAbort = (): void => { settled = true; client.end(); reject(new CancelledError(`connecting to ${hostName}`)) }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      client.once('ready', () => { settled = true; opts.signal?.removeEventListener('abort', onAbort); resolve() })
      // `on`, not `once`: a failing handshake can report more than one error.
      client.on('error', (err: Error & { level?: string }) => {
        if (settled) return
        settled = true
        opts.signal?.removeEventListener('abort', onAbort)
        conn.proxy?.kill('SIGKILL')
        if (mismatch !== undefined) reject(mismatch)
        else if (err.level === 'client-authentication') reject(new HostAuthError(hostName, 'all authentication methods failed', err))
        else if (/host key|hostVerifier|Host denied/i.test(err.message)) reject(new HostAuthError(hostName, `host key does not match the pinned key in ${ep.hostKeyPath ?? ''}`, err))
        else reject(new HostUnreachableError(hostName, `${ep.host}:${ep.port}: ${err.message}`, err))
      })
      client.connect(cfg)
    })
    client.on('close', () => { conn.closed = true; conn.proxy?.kill('SIGKILL') })
    if (seen !== undefined && opts.pins !== undefined && opts.pins.pinned(hostName)?.fingerprint !== seen) opts.pins.pin(hostName, seen, seenKey)
    return conn
  }

  get isClosed (): boolean { return this.closed }

  /** Where commands run, for messages (CommandRunner). */
  get host (): string { return this.hostName }

  /** Runs a command; throws RemoteCommandError on non-zero exit unless allowFailure. */
  async exec (command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return await this.run(command, commandOptions({ ...opts, input: opts.stdin }))
  }

  /** Runs a shell command line, or an argv (quoted for the host's shell), on the host (CommandRunner). */
  async run (command: string | readonly string[], opts: CommandOptions = {}): Promise<CommandResult> {
    const line = typeof command === 'string' ? command : command.map(shq).join(' ')
    const shown = typeof command === 'string' ? command : command.join(' ')
    throwIfAborted(opts.signal, `\`${shown}\` on ${this.hostName}`)
    // The command runs in a subshell followed by a line carrying its exit status: an sshd on a
    // slow host (an emulated Xen dom0 under load) sometimes closes a finished command's channel
    // without sending the exit status (1-4 in 160 commands); the line still tells how it ended.
    const ch = await this.channel(`(\n${line}\n)\nprintf '\\n${EXIT_MARK}%s\\n' "$?"`)
    const end = new Promise<CommandEnd>(resolve => {
      let exited = false
      let code: number | null = null
      let killedBy: string | undefined
      ch.on('exit', (c: number | null, sig?: string) => { exited = true; code = c; if (c === null && typeof sig === 'string') killedBy = sig })
      // No exit status at all: the session or the whole connection went away mid-command.
      ch.on('close', () => {
        resolve({ code, ...(!exited ? { why: `(no exit status: the SSH ${this.closed ? 'connection' : 'session'} closed before the command finished) ` } : killedBy !== undefined ? { why: `(killed by SIG${killedBy}) ` } : {}) })
      })
    })
    return await collectCommand({ host: this.hostName, command: shown }, {
      stdout: ch,
      stderr: ch.stderr,
      stdin: ch,
      kill: () => { ch.signal('KILL'); ch.close() },
      end,
      // The line is the command's own status (the session's is printf's); without the line
      // (killed, cut off) the session's status or its absence stands.
      finish: (stdout, end) => {
        const marked = splitExitMark(stdout)
        return { stdout: marked.stdout, end: marked.code !== undefined ? { code: marked.code } : end }
      }
    }, opts)
  }

  /** Opens an exec channel and returns the raw stream (for long-running commands). */
  async channel (command: string, opts: { pty?: boolean } = {}): Promise<ClientChannel> {
    return await new Promise((resolve, reject) => {
      this.client.exec(command, opts.pty === true ? { pty: { term: process.env.TERM ?? 'xterm' } } : {}, (err, ch) => {
        if (err !== undefined && err !== null) reject(new HostUnreachableError(this.hostName, `exec failed: ${err.message}`, err))
        else resolve(ch)
      })
    })
  }

  /** Opens a byte stream to a unix socket on the host (OpenSSH direct-streamlocal). */
  async openUnixSocket (path: string): Promise<ClientChannel> {
    return await new Promise((resolve, reject) => {
      this.client.openssh_forwardOutStreamLocal(path, (err, ch) => {
        if (err !== undefined && err !== null) reject(new HostUnreachableError(this.hostName, `cannot open unix socket ${path}: ${err.message}`, err))
        else resolve(ch)
      })
    })
  }

  /** Writes a file on the host through SFTP (atomically: temp name then rename). */
  async writeFile (path: string, data: string | Buffer, mode = 0o644): Promise<void> {
    const sftp = await new Promise<import('ssh2').SFTPWrapper>((resolve, reject) => {
      this.client.sftp((err, s) => { if (err !== undefined && err !== null) reject(err); else resolve(s) })
    })
    const tmp = `${path}.tmp-${process.pid}`
    try {
      await new Promise<void>((resolve, reject) => {
        sftp.writeFile(tmp, data, { mode }, err => { if (err !== undefined && err !== null) reject(err); else resolve() })
      })
      await this.exec(`mv -f '${tmp}' '${path}'`)
    } finally {
      sftp.end()
    }
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.client.end()
    this.proxy?.kill('SIGKILL')
  }
}

/** Marks the line `exec` appends with the command's exit status. */
const EXIT_MARK = '__SC_EXIT_STATUS='

/** Splits the exit status line `exec` appends off a command's output (pure). */
export function splitExitMark (out: string): { stdout: string, code?: number } {
  const m = new RegExp(`\\n${EXIT_MARK}(\\d+)\\n$`).exec(out)
  if (m === null) return { stdout: out }
  return { stdout: out.slice(0, m.index), code: Number(m[1]) }
}

