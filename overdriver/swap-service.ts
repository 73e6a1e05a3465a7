/**
 * One VM's swap export as the host agent runs it: an NBD server (unix socket or TCP) whose
 * export is the VM's local swap disk behind a cooperative swap path. The agent samples
 * `counters()` every interval for the overload controller and calls `setCooperative()` when
 * the controller decides; the sector table is persisted next to the disk so a restarted
 * agent resumes (QEMU reconnects when attached with reconnect-delay, see qemuSwapArgs()).
 */
import { CoopSwapPath, type CoopSwapEvent, type CoopSwapStats, type RepositoryGrant } from './coopswap/coop-swap-path.ts'
import type { SectorTableJson } from './coopswap/sector-table.ts'
import type { RepositoryConnector } from './repository/transport.ts'
import { NbdServer, type Listen, type NbdExport, type NbdServerEvent } from './nbd/server.ts'
import { FileSwapPath, type PagingCounters } from './swap-path.ts'

export const SWAP_EXPORT_NAME = 'swap'

export interface SwapServiceOptions {
  vm: string
  /** The VM's swap disk file on this host (created sparse when missing). */
  diskPath: string
  /** Size of the swap disk; required when the file does not exist yet. */
  sizeBytes?: number
  /** Where QEMU connects: { path } for a unix socket (recommended), or { port, host }. */
  listen: Listen
  /** Sector table persistence; default `${diskPath}.table`. */
  tablePath?: string
  /** Page repositories granted to this VM (capability per repository). */
  repositories?: RepositoryGrant[]
  /** A sector table that moved with the VM (first start on a migration target). */
  table?: SectorTableJson
  /** Start with cooperative swap on (e.g. resuming during an overload). */
  cooperative?: boolean
  /** How the repositories are reached (default clear TCP; the host agent passes pskConnector). */
  connector?: RepositoryConnector
  onEvent?: (e: NbdServerEvent | CoopSwapEvent) => void
}

export class SwapService {
  readonly vm: string
  readonly server: NbdServer
  readonly path: CoopSwapPath
  readonly port: number
  private readonly exp: NbdExport

  private constructor (vm: string, server: NbdServer, path: CoopSwapPath, exp: NbdExport, port: number) {
    this.vm = vm
    this.server = server
    this.path = path
    this.exp = exp
    this.port = port
  }

  static async start (opts: SwapServiceOptions): Promise<SwapService> {
    const disk = await FileSwapPath.open(opts.diskPath, opts.sizeBytes !== undefined ? { sizeBytes: opts.sizeBytes } : {})
    const path = CoopSwapPath.open({
      disk,
      repositories: opts.repositories ?? [],
      tablePath: opts.tablePath ?? `${opts.diskPath}.table`,
      ...(opts.table !== undefined ? { table: opts.table } : {}),
      enabled: opts.cooperative ?? false,
      ...(opts.connector !== undefined ? { connector: opts.connector } : {}),
      ...(opts.onEvent !== undefined ? { onEvent: opts.onEvent } : {})
    })
    const server = new NbdServer(opts.onEvent !== undefined ? { onEvent: opts.onEvent } : {})
    const exp = server.addExport(SWAP_EXPORT_NAME, path)
    let port: number
    try {
      port = await server.listen(opts.listen)
    } catch (e) {
      await path.close()
      throw e
    }
    return new SwapService(opts.vm, server, path, exp, port)
  }

  /** Cumulative paging counters of the export (sample them each interval: overdriver/decision/interval.ts pagingRate). */
  counters (): PagingCounters { return { ...this.exp.counters } }

  /** Turns cooperative swap on or off (the controller's coop-swap-on / coop-swap-off). */
  setCooperative (on: boolean): void {
    if (on) this.path.enable()
    else this.path.disable()
  }

  addRepository (g: RepositoryGrant): void { this.path.addRepository(g) }

  /** The sector table as it moves with the VM (the guest is paused: after the in-flight repository writes settled). */
  async exportTable (): Promise<SectorTableJson> { return await this.path.exportTable() }

  /** Takes over a migrated VM's table (see CoopSwapPath.adoptTable). */
  adoptTable (j: SectorTableJson): { adopted: number, skipped: number, repositories: number } { return this.path.adoptTable(j) }

  /** Forgets entries without freeing their pages (another copy of the VM owns them). */
  releaseTable (which: 'all' | 'foreign' = 'all'): number { return this.path.releaseTable(which) }

  /** Frees every page this VM holds in repositories (its disk has them all). */
  async reclaim (): Promise<number> { return await this.path.reclaim() }

  stats (): { counters: PagingCounters, coopswap: CoopSwapStats } {
    return { counters: this.counters(), coopswap: this.path.stats() }
  }

  /** Stops serving; the sector table is snapshotted, the disk closed. */
  async stop (): Promise<void> {
    await this.server.close()
    await this.path.close()
  }
}

/**
 * QEMU arguments attaching a swap export as a virtio disk. `reconnectDelaySec` keeps guest
 * I/O paused (not failed) while the agent restarts. `discard: unmap` lets the guest's discards
 * (a swap area enabled with `swapon -d`) reach the export as NBD TRIM.
 */
export function qemuSwapArgs (opts: { socketPath: string, nodeName?: string, reconnectDelaySec?: number, exportName?: string }): string[] {
  const node = opts.nodeName ?? 'swap0'
  const blockdev = {
    driver: 'nbd',
    'node-name': node,
    server: { type: 'unix', path: opts.socketPath },
    export: opts.exportName ?? SWAP_EXPORT_NAME,
    'reconnect-delay': opts.reconnectDelaySec ?? 30,
    // Passes the guest's discards (swapon -d) on as NBD TRIM: the export frees those pages in the repositories.
    discard: 'unmap'
  }
  return ['-blockdev', JSON.stringify(blockdev), '-device', `virtio-blk-pci,drive=${node},id=${node}-dev`]
}
