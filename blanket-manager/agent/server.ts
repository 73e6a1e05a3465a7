/**
 * The host agent: a long-running process on every host, listening on a unix socket in
 * the host's Blanket directory. Guests it starts outlive it (QEMU runs detached), so the
 * agent can be restarted or upgraded without touching them.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { readFile, rm, writeFile, chmod } from 'node:fs/promises'
import { cpus, hostname, totalmem } from 'node:os'
import { join } from 'node:path'
import type { HypervisorBackend } from '../../drivers/hypervisor.ts'
import { SupercloudError } from '../../core/errors.ts'
import { AGENT_PROTOCOL_VERSION, encode, LineSplitter, type AccelChoice, type AgentMethod, type AgentResponse, type HelloResult, type ProbeParams } from './protocol.ts'
import { parseParams, parseRequestLine, type AgentParams, type AgentResult } from './schema.ts'
import { VmManager } from './vms.ts'
import type { InterruptionWatch } from './interruption-watch.ts'

export interface AgentOptions {
  dir: string
  bridge: string
  build: string
  backend: HypervisorBackend
  /** The interruption watch of an ec2 host (polling its instance metadata); none elsewhere. */
  watch?: InterruptionWatch
}

/**
 * The longest request line the agent reads. The largest legitimate one is a VM's sector table at
 * a switchover (overdriver.table.adopt: about 30 bytes per page held in a repository), so 64 MiB
 * holds over two million pages (8 GiB swapped out). It was 1 MiB: a table of ~37,000 pages
 * (145 MiB swapped to repositories) made the destination agent drop the connection mid-migration.
 */
export const MAX_REQUEST_BYTES = 64 << 20

/** What a method's handler gets besides its params: the connection, and pushes to it. */
interface Call {
  push: (event: Record<string, unknown>) => void
  sock: Socket
}
type Handler<M extends AgentMethod> = (p: AgentParams<M>, call: Call) => Promise<AgentResult<M>> | AgentResult<M>
/** One handler per method: the compiler checks each takes its method's params and returns its result. */
type Handlers = { [M in AgentMethod]: Handler<M> }

export class Agent {
  private server?: Server
  private accel?: AccelChoice
  private readonly vms: VmManager
  private readonly sockets = new Set<Socket>()

  constructor (private readonly opts: AgentOptions) {
    this.vms = new VmManager(opts.dir, opts.bridge, opts.backend, () => this.accel?.mode ?? 'tcg')
  }

  get socketPath (): string { return join(this.opts.dir, 'agent.sock') }

  async start (): Promise<void> {
    try { this.accel = JSON.parse(await readFile(join(this.opts.dir, 'accel.json'), 'utf8')) as AccelChoice } catch { /* not probed yet */ }
    await rm(this.socketPath, { force: true })
    this.server = createServer(sock => this.serve(sock))
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject)
      this.server?.listen(this.socketPath, () => resolve())
    })
    await chmod(this.socketPath, 0o600)
    // Swap exports of running guests come back with the agent (QEMU reconnects to them).
    await this.vms.overdriver.resume()
    this.opts.watch?.start()
  }

  async stop (): Promise<void> {
    this.opts.watch?.stop()
    await this.vms.overdriver.stop()
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => this.server?.close(() => resolve()) ?? resolve())
    await rm(this.socketPath, { force: true })
  }

  private serve (sock: Socket): void {
    this.sockets.add(sock)
    sock.setEncoding('utf8')
    const lines = new LineSplitter(line => { void this.handle(sock, line) })
    let refused = false
    sock.on('data', (chunk: string) => {
      if (refused) return
      lines.push(chunk)
      if (lines.pending > MAX_REQUEST_BYTES) {
        // Said, not just dropped: the caller's pending requests fail with this reason.
        refused = true
        lines.clear()
        const error = { code: 'SC_AGENT_BAD_REQUEST', message: `a request line of over ${MAX_REQUEST_BYTES} bytes was refused and the connection closed` }
        sock.end(encode({ id: -1, ok: false, error }), () => sock.destroy())
      }
    })
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => sock.destroy())
  }

  private async handle (sock: Socket, line: string): Promise<void> {
    const reply = (msg: AgentResponse): void => { if (!sock.destroyed) sock.write(encode(msg)) }
    const req = parseRequestLine(line)
    if ('error' in req) { reply({ id: req.id, ok: false, error: { code: req.error.code, message: req.error.message } }); return }
    try {
      const push = (event: Record<string, unknown>): void => { if (!sock.destroyed) sock.write(encode({ event: { ts: new Date().toISOString(), type: 'unknown', ...event } })) }
      const result = await this.dispatch(req.method, req.params, { push, sock })
      reply({ id: req.id, ok: true, result: result ?? null })
    } catch (err) {
      const code = err instanceof SupercloudError ? err.code : 'SC_AGENT_INTERNAL'
      reply({ id: req.id, ok: false, error: { code, message: (err as Error).message } })
    }
  }

  /** Checks the request's params against the method's schema (SC_AGENT_BAD_REQUEST naming the field), then runs it. */
  private async dispatch<M extends AgentMethod> (method: M, params: unknown, call: Call): Promise<AgentResult<M>> {
    const handler: Handler<M> = this.handlers[method]
    return await handler(parseParams(method, params), call)
  }

  private readonly handlers: Handlers = {
    'agent.hello': async () => await this.hello(),
    'host.probe': async p => await this.probe(p),
    'vm.create': async p => await this.vms.create(p),
    'vm.destroy': async p => { await this.vms.destroy(p.name, (p.nics ?? []).map(n => n.tap), p.keep); return null },
    'vm.status': async p => await this.vms.status(p.name),
    'vm.list': async () => await this.vms.list(),
    'vm.stats': async p => await this.vms.stats(p.name),
    'vm.balloon': async p => { await this.vms.balloon(p.name, p.bytes); return null },
    'vm.stop': async p => { await this.vms.stop(p.name, p.timeoutMs); return null },
    'vm.update': async p => await this.vms.update(p.launch),
    'vm.console': p => ({ path: this.vms.consoleSocket(p.name) }),
    'vm.migrate.incoming': async p => await this.vms.prepareIncoming(p),
    'vm.migrate.outgoing': async (p, c) => await this.vms.migrateOut(p, c.push),
    'vm.migrate.continue': p => { this.vms.continueMigration(p.name); return null },
    'vm.migrate.cancel': p => { this.vms.cancelMigration(p.name); return null },
    'vm.migrate.finish': async p => await this.vms.finishIncoming(p.name),
    'vm.migrate.active': p => ({ active: this.vms.migrationActive(p.name) }),
    'vm.migrate.mark': async p => await this.vms.markArrival(p.name, p.id),
    'vm.migrate.dirty': async p => await this.vms.dirtyStatus(p.name, p.id),
    'vm.departed.drop': async p => { await this.vms.dropDeparted(p.name); return null },
    'vw.switches': async p => { await this.vms.ensureSwitches(p); return null },
    'vw.attach': async p => { for (const a of p.taps) await this.vms.attach(a.tap, a.bridge, a.mtu); return null },
    'overdriver.configure': p => this.vms.overdriver.configure(p),
    'overdriver.subscribe': (_p, c) => {
      // This connection receives overload.* events until it closes.
      const off = this.vms.overdriver.subscribe(c.push)
      c.sock.once('close', off)
      return null
    },
    'overdriver.repository': async p => await this.vms.overdriver.startRepository(p),
    'overdriver.issue': p => this.vms.overdriver.issue(p),
    'overdriver.stats': () => this.vms.overdriver.stats(),
    'overdriver.migrated': p => { this.vms.overdriver.migrationDone(p.name, p.ok); return null },
    'overdriver.table.export': async p => await this.vms.overdriver.exportTable(p.name),
    'overdriver.table.adopt': p => this.vms.overdriver.adoptTable(p),
    'overdriver.table.handover': p => { this.vms.overdriver.handover(p); return null },
    'host.watch': (p, c) => {
      const w = this.opts.watch
      if (w === undefined) return { watching: false }
      const off = w.subscribe(p.host, c.push)
      c.sock.once('close', off)
      return { watching: true }
    },
    'agent.shutdown': () => { setTimeout(() => { void this.stop().then(() => process.exit(0)) }, 50); return null }
  }

  private async hello (): Promise<HelloResult> {
    const r: HelloResult = {
      protocol: AGENT_PROTOCOL_VERSION,
      build: this.opts.build,
      pid: process.pid,
      hostname: hostname(),
      stateDir: this.opts.dir,
      bridge: this.opts.bridge,
      qemuVersion: await this.opts.backend.version(),
      memTotalBytes: totalmem(),
      cpus: cpus().length
    }
    if (this.accel !== undefined) r.accel = this.accel
    return r
  }

  private async probe (p: ProbeParams): Promise<AccelChoice> {
    let choice: AccelChoice
    if (p.want === 'tcg') choice = { mode: 'tcg', reason: 'forced by spec (accel: tcg)', probed: false }
    else {
      const probed = await this.opts.backend.detectAccel({ kernel: p.kernel, initrd: p.initrd, readyMarker: 'SUPERCLOUD-GUEST-READY', timeoutMs: p.timeoutMs, runDir: join(this.opts.dir, 'probe') })
      if (p.want === 'kvm' && probed.mode !== 'kvm') throw new SupercloudError('SC_KVM_UNUSABLE', `spec asks for accel: kvm but ${probed.reason}`)
      choice = { ...probed, probed: true }
    }
    this.accel = choice
    await writeFile(join(this.opts.dir, 'accel.json'), JSON.stringify(choice))
    return choice
  }
}
