/**
 * A VirtualWire test bed made of real kernel parts, for benchmarks: "hosts" are network
 * namespaces on one underlay bridge (198.18.x.y), each with a holder process that owns its
 * mount namespace (standing in for sshd, as in the endpoint integration test) and an endpoint
 * manager daemon serving the FUSE endpoint interface in it. Endpoints are created by writing
 * to that interface with bash, like an operator; "VMs" are namespaces behind veths attached
 * to endpoint bridges; Domain-0 switches are bridges with veth ports into endpoint bridges
 * (as the host agent builds them).
 *
 * Every name carries the lab's prefix; `cleanup()` removes all of it (daemons, holders and
 * their mounts, namespaces, files) and is also run on SIGINT/SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { attachToEndpoint } from '../../virtualwire/endpoint/attach.ts'
import { endpointDaemonArgv, endpointDaemonScript } from '../../virtualwire/endpoint/daemon.ts'
import { run, sleep, type Res } from './proc.ts'

/** The repository root: the daemon resolves `--import tsx` from here. */
const REPO = resolve(import.meta.dirname, '..', '..')

export interface LabHost {
  name: string
  ns: string
  ip: string
  holder: ChildProcess
  root: string
  state: string
  log: string
  daemon?: ChildProcess
}

const cleanups = new Set<() => Promise<void>>()
let handlersInstalled = false

function installHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`)
    void Promise.allSettled([...cleanups].map(async c => { await c() })).then(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
}

/** Registers an async cleanup run on SIGINT/SIGTERM; returns its unregister function. */
export function onInterrupt (fn: () => Promise<void>): () => void {
  installHandlers()
  cleanups.add(fn)
  return () => { cleanups.delete(fn) }
}

export function newPrefix (tag = 'scw'): string {
  return `${tag}${randomBytes(2).toString('hex')}`
}

export class Lab {
  readonly prefix: string
  readonly dir: string
  readonly hosts = new Map<string, LabHost>()
  private readonly namespaces: string[] = []
  private readonly procs: ChildProcess[] = []
  private readonly unregister: () => void
  private cleaned = false

  constructor (prefix = newPrefix()) {
    this.prefix = prefix
    this.dir = join(tmpdir(), `${prefix}-lab`)
    mkdirSync(this.dir, { recursive: true })
    this.unregister = onInterrupt(async () => { await this.cleanup() })
  }

  host (name: string): LabHost {
    const h = this.hosts.get(name)
    if (h === undefined) throw new Error(`no host ${name}`)
    return h
  }

  async addNs (ns: string): Promise<void> {
    await run(['ip', 'netns', 'add', ns])
    this.namespaces.push(ns)
    await run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
  }

  /** Hosts `names[i]` at `ip(i)`/24 on one underlay bridge (in namespace `<P>-u`), each with a holder. */
  async addHosts (names: string[], ip: (i: number) => string): Promise<void> {
    const u = `${this.prefix}-u`
    await this.addNs(u)
    await run(['ip', '-n', u, 'link', 'add', 'ub', 'type', 'bridge'])
    await run(['ip', '-n', u, 'link', 'set', 'ub', 'up'])
    for (const [i, name] of names.entries()) {
      const ns = `${this.prefix}-${name}`
      await this.addNs(ns)
      await run(['ip', '-n', u, 'link', 'add', `u${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
      await run(['ip', '-n', u, 'link', 'set', `u${i}`, 'master', 'ub', 'up'])
      await run(['ip', '-n', ns, 'addr', 'add', `${ip(i)}/24`, 'dev', 'eth0'])
      await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up'])
      const holder = this.track(spawn('ip', ['netns', 'exec', ns, 'sleep', '100000'], { stdio: 'ignore' }))
      const hdir = join(this.dir, name)
      mkdirSync(join(hdir, 'vw'), { recursive: true })
      this.hosts.set(name, { name, ns, ip: ip(i), holder, root: join(hdir, 'vw'), state: join(hdir, 'endpoints.json'), log: join(hdir, 'daemon.log') })
    }
    await sleep(200)
  }

  private track (c: ChildProcess): ChildProcess {
    this.procs.push(c)
    c.on('error', () => {})
    return c
  }

  /** Spawns argv in namespace `ns` (tracked: killed at cleanup); `tail()` is the end of its output. */
  spawnIn (ns: string, argv: string[]): { child: ChildProcess, tail: () => string } {
    const c = this.track(spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }))
    let out = ''
    const keep = (d: Buffer): void => { out = (out + d.toString()).slice(-4000) }
    c.stdout?.on('data', keep)
    c.stderr?.on('data', keep)
    return { child: c, tail: () => out }
  }

  /**
   * Starts the endpoint manager of `host` in the holder's mount + network namespace; waits for
   * its mount. `fastPath: false` keeps every endpoint bridged (`--no-fast-path`).
   */
  async startEndpointDaemon (name: string, opts: { fastPath?: boolean } = {}): Promise<void> {
    const h = this.host(name)
    const argv = endpointDaemonArgv({ script: endpointDaemonScript(), root: h.root, statePath: h.state, prefix: this.prefix, ...(opts.fastPath === false ? { fastPath: false } : {}) })
    const q = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
    const c = this.track(spawn('nsenter', ['-t', String(h.holder.pid), '-m', '-n', 'sh', '-c', `cd ${q(REPO)} && exec ${argv.map(q).join(' ')} >>${q(h.log)} 2>&1`], { stdio: 'ignore' }))
    h.daemon = c
    for (let i = 0; i < 300; i++) {
      const r = await run(['nsenter', '-t', String(h.holder.pid), '-m', 'test', '-e', join(h.root, 'last_error')], { allowFailure: true })
      if (r.code === 0) return
      if (c.exitCode !== null) break
      await sleep(100)
    }
    let log = ''
    try { log = readFileSync(h.log, 'utf8') } catch {}
    throw new Error(`endpoint daemon of ${name} did not mount: ${log}`)
  }

  /** bash in the host's mount + network namespace, cwd = its endpoint interface root. */
  async hostSh (name: string, script: string): Promise<Res> {
    const h = this.host(name)
    return await run(['nsenter', '-t', String(h.holder.pid), '-m', '-n', 'bash', '-c', `cd ${h.root} || exit 99\n${script}`], { allowFailure: true, timeoutMs: 120000 })
  }

  /**
   * Creates endpoints on `host` through the file interface: each entry is
   * [connector id, AdrA, AdrB]; AdrB = AdrA collapses the connector.
   */
  async createEndpoints (name: string, entries: Array<[number, string, string]>): Promise<void> {
    if (entries.length === 0) return
    const script = entries.map(([id, a, b]) => `echo "${id} ${a} ${b}" > create || { cat last_error; exit 1; }`).join('\n')
    const r = await this.hostSh(name, script)
    if (r.code !== 0) throw new Error(`creating endpoints on ${name} failed: ${r.stdout}${r.stderr}`)
  }

  /**
   * Creates connector `id` between `a` and `b` (hosts): one endpoint on each, or one collapsed
   * endpoint when a === b.
   */
  async connector (id: number, a: string, b: string): Promise<void> {
    const ia = this.host(a).ip
    const ib = this.host(b).ip
    if (a === b) {
      await this.createEndpoints(a, [[id, ia, ia]])
    } else {
      await this.createEndpoints(a, [[id, ia, ib]])
      await this.createEndpoints(b, [[id, ib, ia]])
    }
  }

  /** A "VM": namespace `<P>-<name>` whose eth0 (cidr, MTU) is a veth to `host`; returns the host-side link. */
  async addGuest (name: string, host: string, cidr: string, mtu = 1450): Promise<{ ns: string, link: string }> {
    const ns = `${this.prefix}-${name}`
    const link = `${this.prefix}${name}`
    await this.addNs(ns)
    await run(['ip', '-n', this.host(host).ns, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns])
    await run(['ip', '-n', ns, 'addr', 'add', cidr, 'dev', 'eth0'])
    await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'mtu', String(mtu), 'up'])
    return { ns, link }
  }

  /** A VM-side namespace attached to endpoint `id` on `host` (the endpoint must exist). */
  async guestOnEndpoint (name: string, host: string, id: number, cidr: string): Promise<string> {
    const g = await this.addGuest(name, host, cidr)
    await attachToEndpoint(this.prefix, id, g.link, { netns: this.host(host).ns })
    return g.ns
  }

  /** Target of the tc `mirred` redirect on `dev`'s ingress in `host`, undefined when none. */
  async redirectOf (host: string, dev: string): Promise<string | undefined> {
    const r = await run(['tc', '-n', this.host(host).ns, '-j', 'filter', 'show', 'dev', dev, 'ingress'], { allowFailure: true })
    const m = /"to_dev":"([^"]+)"/.exec(r.stdout)
    return m?.[1]
  }

  /** A VM-side namespace on a plain bridge `bridge` of `host` (created if missing). */
  async guestOnBridge (name: string, host: string, bridge: string, cidr: string, mtu = 1450): Promise<string> {
    const hns = this.host(host).ns
    const has = await run(['ip', '-n', hns, 'link', 'show', 'dev', bridge], { allowFailure: true })
    if (has.code !== 0) await run(['ip', '-n', hns, 'link', 'add', bridge, 'mtu', String(mtu), 'type', 'bridge'])
    await run(['ip', '-n', hns, 'link', 'set', bridge, 'up'])
    const g = await this.addGuest(name, host, cidr, mtu)
    await run(['ip', '-n', hns, 'link', 'set', g.link, 'mtu', String(mtu), 'master', bridge, 'up'])
    return g.ns
  }

  /**
   * A Domain-0 switch on `host`, as the host agent builds one: bridge `<P>s<name>` and, per
   * endpoint id, a veth pair with one end in the endpoint bridge and the other in the switch.
   */
  async addSwitch (host: string, name: string, ids: number[], mtu = 1450): Promise<void> {
    const hns = this.host(host).ns
    const bridge = `${this.prefix}s${name}`
    await run(['ip', '-n', hns, 'link', 'add', bridge, 'mtu', String(mtu), 'type', 'bridge'])
    await run(['ip', '-n', hns, 'link', 'set', bridge, 'up'])
    for (const [i, id] of ids.entries()) {
      const link = `${this.prefix}p${name}${i}`
      const peer = `${this.prefix}q${name}${i}`
      await run(['ip', '-n', hns, 'link', 'add', link, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', peer, 'mtu', String(mtu)])
      await attachToEndpoint(this.prefix, id, link, { netns: hns, mtu })
      await run(['ip', '-n', hns, 'link', 'set', peer, 'master', bridge, 'up'])
    }
  }

  /** Bytes received by `dev` in namespace `ns`. */
  async rxBytes (ns: string, dev: string): Promise<number> {
    const r = await run(['ip', 'netns', 'exec', ns, 'cat', `/sys/class/net/${dev}/statistics/rx_bytes`])
    return Number(r.stdout.trim())
  }

  /** Stops daemons (SIGTERM: unmount), kills every process in our namespaces, deletes them and our files. */
  async cleanup (): Promise<void> {
    if (this.cleaned) return
    this.cleaned = true
    for (const h of this.hosts.values()) {
      const d = h.daemon
      if (d !== undefined && d.exitCode === null && d.signalCode === null) {
        const exited = new Promise<void>(resolve => d.once('exit', () => { resolve() }))
        d.kill('SIGTERM')
        await Promise.race([exited, sleep(3000)])
      }
    }
    for (const c of this.procs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    for (const ns of [...this.namespaces].reverse()) {
      const pids = await run(['ip', 'netns', 'pids', ns], { allowFailure: true })
      for (const pid of pids.stdout.split('\n').filter(Boolean)) await run(['kill', '-9', pid], { allowFailure: true })
    }
    // Children of the daemons (if any) were in the host namespaces, hence killed above.
    await sleep(200)
    for (const ns of [...this.namespaces].reverse()) await run(['ip', 'netns', 'del', ns], { allowFailure: true })
    rmSync(this.dir, { recursive: true, force: true })
    this.unregister()
  }
}
