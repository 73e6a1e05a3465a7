/** Controller side of the agent protocol: RPC over a stream opened through SSH. */
import type { Duplex } from 'node:stream'
import { AgentError, CancelledError } from '../../core/errors.ts'
import { encode, LineSplitter, type AccelChoice, type AdoptTableResult, type AttachParams, type ConfigureParams, type IssueParams, type RepositoryGrantJson, type RepositoryParams, type SwitchesParams, type AgentMethod, type AgentPush, type HelloResult, type IncomingParams, type IncomingResult, type OutgoingParams, type ProbeParams, type VmInfo, type VmLaunch, type VmStats, type UpdateResult } from './protocol.ts'
import { parseAgentMessage, parseResult, type AgentParams, type AgentResult } from './schema.ts'
import { FieldError } from './validate.ts'
import type { MigrationSummary } from '../../drivers/qemu/migration.ts'
import type { DirtyStatus } from '../migration/disk-reuse.ts'
import type { SshConnection } from '../../core/ssh.ts'
import type { SectorTableJson } from '../../overdriver/coopswap/sector-table.ts'

interface Pending {
  /** Checks the result against the method's schema, then resolves (or rejects with SC_AGENT_BAD_RESULT). */
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  timer: NodeJS.Timeout
}

export interface AgentClientOptions {
  /** Where a line the client drops (a malformed push or response) is reported; default one line on stderr. */
  log?: (line: string) => void
}

export class AgentClient {
  readonly host: string
  private readonly stream: Duplex
  private readonly pending = new Map<number, Pending>()
  private nextId = 1
  private closedError?: Error
  private readonly listeners = new Set<(ev: AgentPush['event']) => void>()
  private readonly log: (line: string) => void
  /** Lines dropped because they were no message of the protocol (malformed pushes, responses). */
  dropped = 0

  constructor (host: string, stream: Duplex, opts: AgentClientOptions = {}) {
    this.host = host
    this.stream = stream
    this.log = opts.log ?? (line => { process.stderr.write(`${line}\n`) })
    stream.setEncoding('utf8')
    const lines = new LineSplitter(line => this.onLine(line))
    stream.on('data', (chunk: string) => lines.push(chunk))
    stream.on('close', () => this.fail(new AgentError('SC_AGENT_GONE', `agent on ${host}: connection closed`)))
    stream.on('error', (err: Error) => this.fail(new AgentError('SC_AGENT_GONE', `agent on ${host}: ${err.message}`)))
  }

  /** The connection is over: every pending and later call fails with the first reason given. */
  private fail (err: Error): void {
    this.closedError ??= err
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(this.closedError) }
    this.pending.clear()
  }

  /** Connects to the agent's unix socket through an SSH connection. */
  static async connect (host: string, ssh: SshConnection, socketPath: string, opts: AgentClientOptions = {}): Promise<AgentClient> {
    const ch = await ssh.openUnixSocket(socketPath)
    return new AgentClient(host, ch, opts)
  }

  private onLine (line: string): void {
    let msg: ReturnType<typeof parseAgentMessage>
    try {
      msg = parseAgentMessage(line)
    } catch (err) {
      // A malformed push (or a line that is no response) is dropped: listeners only see valid events.
      this.dropped++
      this.log(`agent on ${this.host}: dropped a malformed message (${(err as Error).message}): ${line.slice(0, 200)}`)
      return
    }
    if (msg.kind === 'push') { for (const l of this.listeners) l(msg.event); return }
    if (msg.kind === 'error' && msg.id === -1 && !this.pending.has(-1)) {
      // About the connection, not one request (e.g. a request line over the agent's limit): the agent closes it.
      this.fail(new AgentError(msg.code, `${this.host}: ${msg.message}`))
      return
    }
    const p = this.pending.get(msg.id)
    if (p === undefined) return
    this.pending.delete(msg.id)
    clearTimeout(p.timer)
    if (msg.kind === 'result') p.resolve(msg.result)
    else if (msg.code === 'SC_CANCELLED') p.reject(new CancelledError(`${msg.message.replace(/ cancelled$/, '')} on ${this.host}`))
    else p.reject(new AgentError(msg.code, `${this.host}: ${msg.message}`))
  }

  onEvent (fn: (ev: AgentPush['event']) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /** Calls `method`; its params and result types come from the protocol's type map (schema.ts), the result is checked against its schema. */
  async call<M extends AgentMethod> (method: M, params: AgentParams<M>, opts: { timeoutMs?: number, signal?: AbortSignal } = {}): Promise<AgentResult<M>> {
    if (this.closedError !== undefined) throw this.closedError
    const id = this.nextId++
    return await new Promise<AgentResult<M>>((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? 30000
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new AgentError('SC_AGENT_TIMEOUT', `agent on ${this.host} did not answer ${method} within ${timeoutMs} ms`))
      }, timeoutMs)
      const onAbort = (): void => {
        clearTimeout(timer)
        this.pending.delete(id)
        reject(new CancelledError(`${method} on ${this.host}`))
      }
      opts.signal?.addEventListener('abort', onAbort, { once: true })
      this.pending.set(id, {
        resolve: v => {
          opts.signal?.removeEventListener('abort', onAbort)
          try {
            resolve(parseResult(method, v))
          } catch (err) {
            if (!(err instanceof FieldError)) throw err
            reject(new AgentError('SC_AGENT_BAD_RESULT', `agent on ${this.host} answered ${method} with a malformed result: ${err.message}`))
          }
        },
        reject: e => { opts.signal?.removeEventListener('abort', onAbort); reject(e) },
        timer
      })
      this.stream.write(encode({ id, method, params }))
    })
  }

  async hello (): Promise<HelloResult> { return await this.call('agent.hello', {}) }
  async probe (p: ProbeParams, signal?: AbortSignal): Promise<AccelChoice> {
    return await this.call('host.probe', p, { timeoutMs: p.timeoutMs + 30000, signal })
  }

  async createVm (l: VmLaunch, signal?: AbortSignal): Promise<VmInfo> {
    return await this.call('vm.create', l, { timeoutMs: l.bootTimeoutMs + 60000, signal })
  }

  /** Removes the VM; `keep`: it migrated away in that migration, keep its disk images for a return. */
  async destroyVm (name: string, nics: Array<{ tap: string }> = [], keep?: string): Promise<void> { await this.call('vm.destroy', { name, nics, ...(keep !== undefined ? { keep } : {}) }, { timeoutMs: 60000 }) }
  async vmStatus (name: string): Promise<VmInfo> { return await this.call('vm.status', { name }) }
  async listVms (): Promise<VmInfo[]> { return await this.call('vm.list', {}) }
  async vmStats (name: string): Promise<VmStats> { return await this.call('vm.stats', { name }) }
  async balloon (name: string, bytes: number): Promise<void> { await this.call('vm.balloon', { name, bytes }) }
  /** Stops the guest and keeps its disks (a restart: vm.create then boots it on them). */
  async stopVm (name: string, timeoutMs: number): Promise<void> { await this.call('vm.stop', { name, timeoutMs }, { timeoutMs: timeoutMs + 60000 }) }
  /** Changes the running guest live to `l` (hot-plug); the new plugged layout. */
  async updateVm (l: VmLaunch): Promise<UpdateResult> { return await this.call('vm.update', { launch: l }, { timeoutMs: 120000 }) }
  async prepareIncoming (p: IncomingParams): Promise<IncomingResult> { return await this.call('vm.migrate.incoming', p, { timeoutMs: 120000 }) }
  async migrateOut (p: OutgoingParams): Promise<MigrationSummary> { return await this.call('vm.migrate.outgoing', p, { timeoutMs: p.deadlineMs + 120000 }) }
  async continueMigration (name: string): Promise<void> { await this.call('vm.migrate.continue', { name }) }
  async migrationActive (name: string): Promise<boolean> { return (await this.call('vm.migrate.active', { name })).active }
  async cancelMigration (name: string): Promise<void> { await this.call('vm.migrate.cancel', { name }) }
  /** Destination, at the switchover hold: start recording the guest's disk writes under migration `id`. */
  async markArrival (name: string, id: string): Promise<{ nodes: string[] }> { return await this.call('vm.migrate.mark', { name, id }) }
  /** Source: whether the guest's disks carry migration `id`'s bitmap, and how many bytes are dirty. */
  async dirtyStatus (name: string, id: string): Promise<DirtyStatus> { return await this.call('vm.migrate.dirty', { name, id }) }
  /** Deletes the disk images `name` left on this host. */
  async dropDeparted (name: string): Promise<void> { await this.call('vm.departed.drop', { name }) }
  async finishIncoming (name: string): Promise<VmInfo> { return await this.call('vm.migrate.finish', { name }, { timeoutMs: 60000 }) }
  async ensureSwitches (p: SwitchesParams): Promise<void> { await this.call('vw.switches', p) }
  async attach (p: AttachParams): Promise<void> { await this.call('vw.attach', p) }
  async consoleSocket (name: string): Promise<string> { return (await this.call('vm.console', { name })).path }

  /** Overdriver: the policy for this host's loop (blanket-manager/agent/overdriver-host.ts). */
  async overdriverConfigure (p: ConfigureParams): Promise<{ vms: string[] }> { return await this.call('overdriver.configure', p) }
  /** Overdriver: this connection receives the host's overload.* events (see onEvent) until it closes. */
  async overdriverSubscribe (): Promise<void> { await this.call('overdriver.subscribe', {}) }
  /** Overdriver: run a page repository on this host (idempotent); returns where it listens. */
  async overdriverRepository (p: RepositoryParams): Promise<{ host: string, port: number, capacityPages: number }> { return await this.call('overdriver.repository', p) }
  /** Overdriver: a capability for `vm` at this host's repository, to put in the VM's launch (swap.repositories). */
  async overdriverIssue (p: IssueParams): Promise<RepositoryGrantJson> { return await this.call('overdriver.issue', p) }
  /**
   * This connection receives the host's `host.interruption` / `host.rebalance` events (see
   * onEvent), as `host`, until it closes; `watching` is false where the agent has no
   * interruption watch (not an ec2 host).
   */
  async hostWatch (host: string): Promise<boolean> { return (await this.call('host.watch', { host })).watching }
  async overdriverStats (): Promise<Record<string, unknown>> { return await this.call('overdriver.stats', {}) }
  /** Overdriver: a migration decided for `name` (overload.migration-decided) finished or failed. */
  async overdriverMigrated (name: string, ok: boolean): Promise<void> { await this.call('overdriver.migrated', { name, ok }) }
  /** Overdriver, source of a migration at the switchover hold: the VM's sector table (moves with the VM). */
  async overdriverExportTable (name: string): Promise<SectorTableJson> { return (await this.call('overdriver.table.export', { name }, { timeoutMs: 10000 })).table }
  /** Overdriver, destination at the switchover hold: serve the moved table's pages from their repositories. */
  /** The table can be megabytes (about 30 bytes a page): the reply may take 10 s plus a second per 20,000 pages. */
  async overdriverAdoptTable (name: string, table: SectorTableJson): Promise<AdoptTableResult> { return await this.call('overdriver.table.adopt', { name, table }, { timeoutMs: 10000 + Math.ceil(table.entries.length / 20000) * 1000 }) }
  /** Overdriver, source: whether the destination adopted the table (ok: destroying this copy leaves its pages to it). */
  async overdriverHandover (name: string, ok: boolean): Promise<void> { await this.call('overdriver.table.handover', { name, ok }, { timeoutMs: 10000 }) }

  close (): void {
    this.stream.end()
    this.stream.destroy()
  }
}
