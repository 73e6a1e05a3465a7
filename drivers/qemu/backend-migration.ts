/**
 * The QEMU backend's BackendMigration: QEMU's own migration driven over QMP (migration.ts),
 * with the guest's disks mirrored to the destination's NBD exports and dirty bitmaps for a
 * return (the disks capability). Every mode is available.
 */
import type { BackendMigration, GuestDefinition, GuestStatus, IncomingEndpoint, IncomingMigration, MigratingGuest, MigrationDisks, MigrationSummary, OutgoingMigration } from '../hypervisor.ts'
import type { MigrationMode } from '../../core/migration.ts'
import { OutgoingSessions } from '../migration-sessions.ts'
import { SWAP_ID } from './args.ts'
import { dirtyStatus, finishIncoming, markArrival, runOutgoing, startIncoming } from './migration.ts'
import { requireSecurity } from './migration-tls.ts'

/** QEMU's block node of the guest disk with device id `id` (args.ts names them so). */
const node = (id: string): string => `drv-${id}`

/** Block nodes of every disk that moves with the guest: its disks, then the swap disk (its pages are part of the guest's memory). */
const movingNodes = (g: { diskIds: string[], swap: boolean }): string[] => [...g.diskIds, ...(g.swap ? [SWAP_ID] : [])].map(node)

export class QemuMigration implements BackendMigration {
  private readonly sessions = new OutgoingSessions()

  /** `start` is the backend's start (the destination's guest waits with `-incoming defer`). */
  constructor (private readonly start: (def: GuestDefinition) => Promise<GuestStatus>) {}

  readonly disks: MigrationDisks = {
    node,
    markArrival: async (g, nodes, id) => { await markArrival(g.runDir, nodes, id) },
    dirtyStatus: async (g, nodes, id) => await dirtyStatus(g.runDir, nodes, id)
  }

  checkMode (_mode: MigrationMode): void {}

  async prepareIncoming (def: GuestDefinition, p: IncomingMigration): Promise<IncomingEndpoint> {
    const security = requireSecurity(def.name, 'incoming', p.tls)
    const migrationPort = await p.port([])
    const nbdPort = await p.port([migrationPort])
    await this.start({ ...def, incoming: true })
    await startIncoming({ runDir: def.runDir, listenIp: p.listenIp, migrationPort, nbdPort, diskNodes: movingNodes({ diskIds: def.disks.map(d => d.id), swap: def.swap !== undefined }), mode: p.mode, security })
    return { migrationPort, nbdPort }
  }

  async migrateOut (g: MigratingGuest, p: OutgoingMigration): Promise<MigrationSummary> {
    const security = requireSecurity(g.name, 'outgoing', p.tls)
    return await this.sessions.run(g.name, p.signal, async s => await runOutgoing({
      runDir: g.runDir,
      destIp: p.destIp,
      migrationPort: p.migrationPort,
      nbdPort: p.nbdPort,
      diskNodes: movingNodes(g),
      ramBytes: g.memoryBytes,
      mode: p.mode,
      maxDowntimeMs: p.maxDowntimeMs,
      ...(p.bandwidth !== undefined ? { bandwidth: p.bandwidth } : {}),
      deadlineMs: p.deadlineMs,
      security,
      ...(p.incremental !== undefined ? { incremental: p.incremental } : {}),
      signal: s.signal,
      ...(p.onProgress !== undefined ? { onProgress: p.onProgress } : {}),
      onSwitchover: async () => { await s.switchover({ hold: p.holdAtSwitchover, ...(p.onSwitchover !== undefined ? { onSwitchover: p.onSwitchover } : {}) }) }
    }))
  }

  continue (name: string): void { this.sessions.continue(name) }
  cancel (name: string): void { this.sessions.cancel(name) }
  active (name: string): boolean { return this.sessions.active(name) }

  async finish (g: MigratingGuest): Promise<void> {
    await finishIncoming(g.runDir, movingNodes(g))
  }
}
