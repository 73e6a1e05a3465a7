/**
 * The controller's connections to its hosts: one SSH connection and one host agent RPC
 * client per host, made on first use, cached, dropped when the host is re-created or removed,
 * and all closed on stop.
 */
import type { HostRecord } from '../../drivers/cloud.ts'
import { NotFoundError } from '../../core/errors.ts'
import { SshConnection, type HostKeyPins } from '../../core/ssh.ts'
import { AgentClient } from '../agent/client.ts'
import { withOwnKey } from '../access/own-key.ts'

/**
 * What the controller asks of a host agent (AgentClient implements it; unit tests implement it
 * in memory). The methods keep AgentClient's signatures.
 */
export type HostAgent = Pick<AgentClient,
  'host' | 'hello' | 'listVms' | 'createVm' | 'destroyVm' | 'stopVm' | 'updateVm' | 'vmStatus' | 'balloon' |
  'prepareIncoming' | 'migrateOut' | 'continueMigration' | 'migrationActive' | 'cancelMigration' | 'finishIncoming' |
  'markArrival' | 'dirtyStatus' | 'dropDeparted' | 'onEvent' |
  'ensureSwitches' | 'attach' | 'consoleSocket' |
  'overdriverRepository' | 'overdriverIssue' | 'overdriverExportTable' | 'overdriverAdoptTable' | 'overdriverHandover' |
  'close'>

/** SSH and agent connections per host. `A` is the agent client type (AgentClient for real hosts). */
export interface HostSessions<A extends HostAgent = AgentClient> {
  /** SSH connection to a host (cached; reconnects when closed). */
  connect: (host: string, signal?: AbortSignal) => Promise<SshConnection>
  /** The host agent's RPC client (cached). */
  agent: (host: string) => Promise<A>
  /** Caches the client a bootstrap connected (the agent it just started). */
  adopt: (host: string, agent: A) => void
  /** Closes and forgets a host's connections (it is being re-created or removed). */
  drop: (host: string) => void
  /** Closes every connection. */
  close: () => void
}

/** Real connections: SSH to each host's record, the agent's socket through it. */
export class SshSessions implements HostSessions<AgentClient> {
  private readonly ssh = new Map<string, Promise<SshConnection>>()
  private readonly agents = new Map<string, Promise<AgentClient>>()

  /**
   * `record`: a host's record as the state has it (undefined when the host was not created);
   * `pins`: the host keys every connection checks (and pins at first contact); `ownKey`: this
   * operator's supercloud key, used where a record names another operator's (access/own-key.ts).
   */
  constructor (private readonly record: (host: string) => HostRecord | undefined, private readonly pins?: HostKeyPins, private readonly ownKey?: string) {}

  private recordOf (host: string): HostRecord {
    const r = this.record(host)
    if (r === undefined) throw new NotFoundError('host', host)
    return r
  }

  async connect (host: string, signal?: AbortSignal): Promise<SshConnection> {
    const record = this.recordOf(host)
    let p = this.ssh.get(host)
    if (p !== undefined) {
      const c = await p.catch(() => undefined)
      if (c !== undefined && !c.isClosed) return c
    }
    p = SshConnection.connect(host, withOwnKey(record.ssh, this.ownKey), { ...(signal !== undefined ? { signal } : {}), ...(this.pins !== undefined ? { pins: this.pins } : {}) })
    this.ssh.set(host, p)
    p.catch(() => this.ssh.delete(host))
    return await p
  }

  async agent (host: string): Promise<AgentClient> {
    let p = this.agents.get(host)
    if (p === undefined) {
      p = (async () => {
        const record = this.recordOf(host)
        const ssh = await this.connect(host)
        return await AgentClient.connect(host, ssh, `${record.stateDir}/agent.sock`)
      })()
      this.agents.set(host, p)
      p.catch(() => this.agents.delete(host))
    }
    return await p
  }

  adopt (host: string, agent: AgentClient): void {
    this.agents.set(host, Promise.resolve(agent))
  }

  drop (host: string): void {
    void this.agents.get(host)?.then(a => a.close()).catch(() => {})
    this.agents.delete(host)
    void this.ssh.get(host)?.then(c => c.close()).catch(() => {})
    this.ssh.delete(host)
  }

  close (): void {
    for (const h of new Set([...this.ssh.keys(), ...this.agents.keys()])) this.drop(h)
  }
}
