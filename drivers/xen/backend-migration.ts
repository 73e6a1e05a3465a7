/**
 * The Xen backend's BackendMigration: xl moves the guest itself (SelfMigration, migration.ts),
 * pre-copy only, memory only (Xen guests' disks are not moved: no disks capability).
 *
 * The guest arrives **paused** at the destination: the source's migrateOut reports the
 * switchover when the stream ended (and holds there when asked), and the destination's
 * `finish` lets the guest run. A guest that arrived but is never let run (the controller went
 * away at the switch) runs anyway after `unclaimedResumeMs`.
 */
import { SupercloudError } from '../../core/errors.ts'
import { migrationTlsProblem, type MigrationMode, type MigrationSecurity } from '../../core/migration.ts'
import type { BackendMigration, GuestDefinition, IncomingEndpoint, MigratingGuest, MigrationSummary, OutgoingMigration, SelfMigration, StreamEnd } from '../hypervisor.ts'
import { OutgoingSessions } from '../migration-sessions.ts'

interface Arrival {
  ac: AbortController
  arrived: Promise<void>
  timer?: NodeJS.Timeout
}

/**
 * This end of the stream from the migration's credentials: the destination is the TLS server,
 * the source its client, each pinning the other's certificate. 'off' (asked explicitly): clear
 * text. Anything else is refused before anything starts (SC_MIGRATION_TLS_MISSING).
 */
export function streamEnd (guest: string, side: 'incoming' | 'outgoing', sec: MigrationSecurity | undefined): StreamEnd | undefined {
  if (sec === 'off') return undefined
  const refuse = (detail: string): never => {
    throw new SupercloudError('SC_MIGRATION_TLS_MISSING', `migration of ${guest} (${side}) refused: ${detail}. A Xen migration's stream runs over TLS with the certificates the controller draws for it; ask through the controller (supercloud migrate), or pass tls: 'off' explicitly for clear text`, { exitCode: 2 })
  }
  if (sec === undefined) return refuse('no TLS credentials were given')
  const problem = migrationTlsProblem(sec)
  if (problem !== undefined) return refuse(`the TLS credentials are malformed (${problem})`)
  if (sec.x509 === undefined) return refuse('the TLS credentials carry no x509 pair (xl\'s stream goes through socat, which has no PSK)')
  return side === 'incoming' ? { self: sec.x509.server, peerCert: sec.x509.client.cert } : { self: sec.x509.client, peerCert: sec.x509.server.cert }
}

export class XenMigration implements BackendMigration {
  private readonly sessions = new OutgoingSessions()
  /** Guests arriving here: the listener, until finish (or forget). */
  private readonly arrivals = new Map<string, Arrival>()

  constructor (private readonly self: SelfMigration, private readonly unclaimedResumeMs = 60_000) {}

  /** xl migrate is pre-copy only. */
  checkMode (mode: MigrationMode): void {
    if (mode !== 'auto' && mode !== 'precopy') throw new SupercloudError('SC_MIGRATION_MODE_UNSUPPORTED', `xen migrates by pre-copy only (xl migrate); mode ${mode} is not available on this host`)
  }

  /** Destination: one listener for the stream (TLS: the server end of the migration's x509 pair). */
  async prepareIncoming (def: GuestDefinition, p: { listenIp: string, mode: MigrationMode, port: (avoid: number[]) => Promise<number>, tls?: MigrationSecurity }): Promise<IncomingEndpoint> {
    this.checkMode(p.mode)
    const tls = streamEnd(def.name, 'incoming', p.tls)
    const name = def.name
    this.forget(name)
    const port = await p.port([])
    const ac = new AbortController()
    try {
      const r = await this.self.receive({ ...def, incoming: true }, { listenIp: p.listenIp, port, signal: ac.signal, ...(tls !== undefined ? { tls } : {}) })
      const entry: Arrival = { ac, arrived: r.arrived }
      r.arrived.catch(() => {})
      r.arrived.then(() => {
        entry.timer = setTimeout(() => {
          if (this.arrivals.get(name) !== entry) return
          this.arrivals.delete(name)
          void this.self.resume(name, def.runDir).catch(() => {})
        }, this.unclaimedResumeMs)
        entry.timer.unref()
      }, () => {})
      this.arrivals.set(name, entry)
      return { migrationPort: port, nbdPort: 0, selfConfig: r.config }
    } catch (err) {
      ac.abort()
      throw err
    }
  }

  /** Drops a guest's pending arrival (its listener stops, the half-arrived guest goes); the backend's destroy calls it. */
  forget (name: string): void {
    const a = this.arrivals.get(name)
    if (a === undefined) return
    a.ac.abort()
    clearTimeout(a.timer)
    this.arrivals.delete(name)
  }

  /** Source: xl sends the guest; it arrives paused at the destination, which is the switchover. */
  async migrateOut (g: MigratingGuest, p: OutgoingMigration): Promise<MigrationSummary> {
    return await this.sessions.run(g.name, p.signal, async s => {
      if (p.selfConfig === undefined) throw new SupercloudError('SC_AGENT_BAD_REQUEST', 'a Xen migration needs the destination\'s guest configuration (selfConfig)')
      this.checkMode(p.mode)
      const tls = streamEnd(g.name, 'outgoing', p.tls)
      const total = g.memoryBytes
      let sent = 0
      let iteration = 0
      let switchAt: number | undefined
      const started = Date.now()
      const r = await this.self.send(g.name, g.runDir, {
        destIp: p.destIp,
        port: p.migrationPort,
        config: p.selfConfig,
        signal: s.signal,
        ...(tls !== undefined ? { tls } : {}),
        onProgress: pr => {
          sent = Math.max(sent, pr.sentBytes ?? sent)
          iteration = Math.max(iteration, pr.iteration ?? iteration)
          // xl's events: start, memory, switchover (the last round), handover, arrived.
          if (pr.phase === 'switchover' || pr.phase === 'handover' || pr.phase === 'arrived') switchAt ??= Date.now()
          const phase = switchAt !== undefined ? 'switchover' : 'memory'
          p.onProgress?.({ phase, sentBytes: sent, remainingBytes: Math.max(0, total - sent), dirtyRate: 0, iteration, fraction: Math.min(0.99, total > 0 ? sent / total : 0), message: pr.message })
        }
      })
      await s.switchover({ hold: p.holdAtSwitchover, ...(p.onSwitchover !== undefined ? { onSwitchover: p.onSwitchover } : {}) })
      return {
        mode: 'precopy',
        postcopy: false,
        totalMs: r.totalMs > 0 ? r.totalMs : Date.now() - started,
        // xl does not measure the pause; from its last round to the end of the stream, as the source saw it.
        downtimeMs: switchAt !== undefined ? Date.now() - switchAt : 0,
        sentBytes: r.sentBytes ?? sent,
        iterations: r.iterations ?? iteration,
        diskSentBytes: 0,
        diskSizeBytes: 0,
        diskReused: false
      }
    })
  }

  continue (name: string): void { this.sessions.continue(name) }
  cancel (name: string): void { this.sessions.cancel(name) }
  active (name: string): boolean { return this.sessions.active(name) }

  /** Destination: waits for the guest's arrival (when its listener is ours), then lets it run. */
  async finish (g: MigratingGuest): Promise<void> {
    const a = this.arrivals.get(g.name)
    if (a !== undefined) {
      await a.arrived
      clearTimeout(a.timer)
      this.arrivals.delete(g.name)
    }
    await this.self.resume(g.name, g.runDir)
  }
}
