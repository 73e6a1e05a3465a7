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
import { AGENT_PROTOCOL_VERSION, encode, splitLines, type AgentRequest, type AccelChoice, type AttachParams, type HelloResult, type IncomingParams, type SwitchesParams, type OutgoingParams, type ProbeParams, type VmLaunch } from './protocol.ts'
import { VmManager } from './vms.ts'
import type { AdoptTableParams, ConfigureParams, HandoverParams, IssueParams, RepositoryParams } from './overdriver.ts'

export interface AgentOptions {
  dir: string
  bridge: string
  build: string
  backend: HypervisorBackend
}


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
  }

  async stop (): Promise<void> {
    await this.vms.overdriver.stop()
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => this.server?.close(() => resolve()) ?? resolve())
    await rm(this.socketPath, { force: true })
  }

  private serve (sock: Socket): void {
    this.sockets.add(sock)
    sock.setEncoding('utf8')
    let buf = ''
    sock.on('data', (chunk: string) => {
      buf = splitLines(buf + chunk, line => { void this.handle(sock, line) })
      if (buf.length > 1 << 20) sock.destroy()
    })
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => sock.destroy())
  }

  private async handle (sock: Socket, line: string): Promise<void> {
    let req: AgentRequest
    try {
      req = JSON.parse(line) as AgentRequest
      if (typeof req.id !== 'number' || typeof req.method !== 'string') throw new Error('missing id or method')
    } catch (err) {
      sock.write(encode({ id: -1, ok: false, error: { code: 'SC_AGENT_BAD_REQUEST', message: `malformed request: ${(err as Error).message}` } }))
      return
    }
    try {
      const push = (event: Record<string, unknown>): void => { if (!sock.destroyed) sock.write(encode({ event: { ts: new Date().toISOString(), type: 'unknown', ...event } })) }
      const result = await this.dispatch(req, push, sock)
      if (!sock.destroyed) sock.write(encode({ id: req.id, ok: true, result: result ?? null }))
    } catch (err) {
      const code = err instanceof SupercloudError ? err.code : 'SC_AGENT_INTERNAL'
      if (!sock.destroyed) sock.write(encode({ id: req.id, ok: false, error: { code, message: (err as Error).message } }))
    }
  }

  private async dispatch (req: AgentRequest, push: (event: Record<string, unknown>) => void, sock: Socket): Promise<unknown> {
    const p = (req.params ?? {}) as Record<string, unknown>
    const name = (): string => {
      if (typeof p.name !== 'string') throw new SupercloudError('SC_AGENT_BAD_REQUEST', `${req.method}: params.name must be a string`)
      return p.name
    }
    switch (req.method) {
      case 'agent.hello': return await this.hello()
      case 'host.probe': return await this.probe(p as unknown as ProbeParams)
      case 'vm.create': return await this.vms.create(p as unknown as VmLaunch)
      case 'vm.destroy': return await this.vms.destroy(name(), Array.isArray(p.nics) ? (p.nics as Array<{ tap: string }>).map(n => n.tap) : [], typeof p.keep === 'string' ? p.keep : undefined)
      case 'vm.status': return await this.vms.status(name())
      case 'vm.list': return await this.vms.list()
      case 'vm.stats': return await this.vms.stats(name())
      case 'vm.balloon': return await this.vms.balloon(name(), Number(p.bytes))
      case 'vm.console': return { path: this.vms.consoleSocket(name()) }
      case 'vm.migrate.incoming': return await this.vms.prepareIncoming(p as unknown as IncomingParams)
      case 'vm.migrate.outgoing': return await this.vms.migrateOut(p as unknown as OutgoingParams, push)
      case 'vm.migrate.continue': this.vms.continueMigration(name()); return null
      case 'vm.migrate.cancel': this.vms.cancelMigration(name()); return null
      case 'vm.migrate.finish': return await this.vms.finishIncoming(name())
      case 'vm.migrate.active': return { active: this.vms.migrationActive(name()) }
      case 'vm.migrate.mark': return await this.vms.markArrival(name(), String(p.id))
      case 'vm.migrate.dirty': return await this.vms.dirtyStatus(name(), String(p.id))
      case 'vm.departed.drop': await this.vms.dropDeparted(name()); return null
      case 'vw.switches': return await this.vms.ensureSwitches(p as unknown as SwitchesParams)
      case 'vw.attach': for (const a of (p as unknown as AttachParams).taps ?? []) await this.vms.attach(a.tap, a.bridge, a.mtu); return null
      case 'overdriver.configure': return this.vms.overdriver.configure(p as unknown as ConfigureParams)
      case 'overdriver.subscribe': {
        // This connection receives overload.* events until it closes.
        const off = this.vms.overdriver.subscribe(push)
        sock.once('close', off)
        return null
      }
      case 'overdriver.repository': return await this.vms.overdriver.startRepository(p as unknown as RepositoryParams)
      case 'overdriver.issue': return this.vms.overdriver.issue(p as unknown as IssueParams)
      case 'overdriver.stats': return this.vms.overdriver.stats()
      case 'overdriver.migrated': this.vms.overdriver.migrationDone(name(), p.ok === true); return null
      case 'overdriver.table.export': return await this.vms.overdriver.exportTable(name())
      case 'overdriver.table.adopt': return this.vms.overdriver.adoptTable(p as unknown as AdoptTableParams)
      case 'overdriver.table.handover': this.vms.overdriver.handover({ name: name(), ok: (p as unknown as HandoverParams).ok === true }); return null
      case 'agent.shutdown': setTimeout(() => { void this.stop().then(() => process.exit(0)) }, 50); return null
      default: throw new SupercloudError('SC_AGENT_UNKNOWN_METHOD', `unknown method '${String(req.method)}'`)
    }
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
