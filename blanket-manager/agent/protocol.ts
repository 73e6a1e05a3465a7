/**
 * The host agent's wire protocol: newline-delimited JSON over a unix socket on the host,
 * reached by the controller only through SSH (direct-streamlocal). One request, one response,
 * matched by `id`; the agent may also push `event` messages.
 */
import type { GuestFirewall } from '../../images/guest/cmdline.ts'
import type { ControllerPolicy, HostView } from '../../overdriver/decision/decide.ts'
import type { SectorTableJson } from '../../overdriver/coopswap/sector-table.ts'
import type { GuestPlugged, OutgoingMigration } from '../../drivers/hypervisor.ts'
import type { MigrationSecurity } from '../../core/migration.ts'
import type { RepositoryTls } from '../../overdriver/repository/transport.ts'

export const AGENT_PROTOCOL_VERSION = 1

export interface AgentRequest {
  id: number
  method: AgentMethod
  params: unknown
}

export type AgentResponse =
  | { id: number, ok: true, result: unknown }
  | { id: number, ok: false, error: { code: string, message: string } }

export interface AgentPush {
  event: { type: string, ts: string, [k: string]: unknown }
}

export type AgentMethod =
  | 'agent.hello'
  | 'host.probe'
  | 'vm.create'
  | 'vm.destroy'
  | 'vm.status'
  | 'vm.list'
  | 'vm.stats'
  | 'vm.balloon'
  | 'vm.stop'
  | 'vm.update'
  | 'vm.console'
  | 'vm.migrate.incoming'
  | 'vm.migrate.outgoing'
  | 'vm.migrate.continue'
  | 'vm.migrate.cancel'
  | 'vm.migrate.finish'
  | 'vm.migrate.active'
  | 'vm.migrate.mark'
  | 'vm.migrate.dirty'
  | 'vm.departed.drop'
  | 'vw.switches'
  | 'vw.attach'
  | 'agent.shutdown'
  | 'host.watch'
  | 'overdriver.configure'
  | 'overdriver.subscribe'
  | 'overdriver.repository'
  | 'overdriver.issue'
  | 'overdriver.stats'
  | 'overdriver.migrated'
  | 'overdriver.table.export'
  | 'overdriver.table.adopt'
  | 'overdriver.table.handover'

export interface HelloResult {
  protocol: number
  /** Hash of the agent bundle that is running. */
  build: string
  pid: number
  hostname: string
  stateDir: string
  bridge: string
  qemuVersion: string
  /** Memory and CPUs the host has (not what the spec offers). */
  memTotalBytes: number
  cpus: number
  accel?: AccelChoice
}

/** The hypervisor mode a host uses; `probed` when a test guest decided it (not forced by the spec). */
export interface AccelChoice {
  mode: 'kvm' | 'tcg' | 'xen'
  reason: string
  probed: boolean
}

export interface ProbeParams {
  kernel: string
  initrd: string
  timeoutMs: number
  /** 'auto' probes KVM; 'kvm' or 'tcg' force the mode. */
  want: 'auto' | 'kvm' | 'tcg'
}

export type VmImage =
  | { kind: 'kernel', kernel: string, initrd?: string, append?: string, readyMarker?: string }
  | { kind: 'qcow2', path: string }

export interface VmLaunch {
  name: string
  cpus: number
  memory: { requestedBytes: number, allocatedBytes: number }
  image: VmImage
  disks: Array<{ name: string, sizeBytes: number }>
  /** `bridge`: where the TAP joins (a VirtualWire endpoint bridge); default the host's guest bridge. `mtu`: advertised to the guest. */
  nics: Array<{ name: string, mac: string, tap: string, address: string, bridge?: string, mtu?: number }>
  gateway?: string
  /** Makes the guest a transparent L2 firewall between two of its interfaces (guest names, eth<i>). */
  firewall?: GuestFirewall
  /** A swap disk served by Overdriver's NBD export on the host (blanket-manager/agent/overdriver-host.ts). */
  swap?: SwapLaunch
  /** How long to wait for the guest's ready marker on its console. */
  bootTimeoutMs: number
  /** What of it was hot-plugged while it ran (a migration's destination plugs the same); undefined: a cold boot. */
  plugged?: GuestPlugged
}

/** vm.update: the running guest changed live to `launch` (its sizes, disks, NICs); answers the new plugged layout. */
export interface UpdateParams { launch: VmLaunch }
export interface UpdateResult { plugged: GuestPlugged }

export interface VmInfo {
  name: string
  state: 'running' | 'paused' | 'shutdown' | 'absent' | 'other'
  pid?: number
  detail?: string
  accel?: string
}

export interface VmStats {
  name: string
  memoryBytes: number
  balloonActualBytes: number
  residentBytes: number
}

/** Encodes one message as a line. */
export function encode (msg: AgentRequest | AgentResponse | AgentPush): string {
  return JSON.stringify(msg) + '\n'
}

/** Splits a byte stream into JSON lines; returns the unconsumed tail. */
/**
 * Splits a stream of text into lines (empty ones skipped). Only each new chunk is searched for a
 * line end, so a line of many megabytes costs what its bytes cost (joining the whole buffer and
 * searching it again per chunk made a 64 MiB line take minutes).
 */
export class LineSplitter {
  private parts: string[] = []
  /** Length of the line begun and not ended yet. */
  pending = 0

  constructor (private readonly onLine: (line: string) => void) {}

  push (chunk: string): void {
    let from = 0
    for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', from)) {
      this.parts.push(chunk.slice(from, i))
      const line = this.parts.length === 1 ? this.parts[0] ?? '' : this.parts.join('')
      this.parts = []
      this.pending = 0
      from = i + 1
      if (line.trim() !== '') this.onLine(line)
    }
    if (from < chunk.length) { this.parts.push(chunk.slice(from)); this.pending += chunk.length - from }
  }

  /** Drops the line begun. */
  clear (): void { this.parts = []; this.pending = 0 }
}

export interface IncomingParams {
  launch: VmLaunch
  /** Address the destination listens on (its site address). */
  listenIp: string
  mode: 'auto' | 'precopy' | 'postcopy' | 'hybrid'
  /** The migration's TLS credentials (drivers/hypervisor.ts IncomingMigration.tls); the source gets the same in OutgoingParams.tls. */
  tls?: MigrationSecurity
  /**
   * Disk reuse on return: the migration id under which this host kept the VM's disk images when
   * the VM left it. Kept images with that id are opened instead of fresh ones; any other kept
   * images of the VM here are deleted.
   */
  reuse?: string
}

export interface IncomingResult {
  migrationPort: number
  nbdPort: number
  /** Block nodes of disks that can be kept and reused later (the swap disk is not one). */
  diskNodes?: string[]
  /** Block nodes opened on the kept images of migration `reuse` (only their dirty blocks need sending). */
  reusedNodes?: string[]
  /**
   * A backend that migrates guests itself (Xen): the guest configuration the source must send,
   * so the guest lands in this host's bridges and paths. Pass it back as OutgoingParams.selfConfig.
   */
  selfConfig?: string
}

/** Arrival (destination, at the switchover hold) or dirty state (source) of migration `id`'s bitmaps. */
export interface BitmapParams {
  name: string
  id: string
}

/** Removes the VM from this host; `keep`: the VM migrated away in migration `keep`, keep its disk images for a return. */
export interface DestroyParams {
  name: string
  nics?: Array<{ tap: string }>
  keep?: string
}

/**
 * vm.migrate.outgoing: the backend's outgoing migration (drivers/hypervisor.ts OutgoingMigration,
 * where each field is described) as it crosses the wire: the guest's name instead of the
 * in-process signal and callbacks (the agent cancels on vm.migrate.cancel, reports progress as
 * pushed events, and holds at the switchover until vm.migrate.continue).
 */
export type OutgoingParams = { name: string } & Omit<OutgoingMigration, 'signal' | 'onProgress' | 'onSwitchover'>

/** The Domain-0 switches a host should have (VirtualWire); others carrying the prefix are removed. */
export interface SwitchesParams {
  prefix: string
  switches: Array<{ name: string, bridge: string, mtu: number, ports: Array<{ port: string, endpointBridge: string, link: string, peer: string }> }>
}

/** Moves TAPs of running guests to the bridge their NIC belongs on now (wiring changed). */
export interface AttachParams {
  taps: Array<{ tap: string, bridge: string, mtu?: number }>
}

/** Requests that name one VM on the host. */
export interface NameParams { name: string }

/** vm.balloon: the guest's new memory target. */
export interface BalloonParams { name: string, bytes: number }

/** vm.stop: the guest stops (asked to power down, killed after `timeoutMs`); its directory and disk images stay. */
export interface StopParams { name: string, timeoutMs: number }

/** vm.migrate.mark / vm.migrate.dirty: the migration whose bitmaps are meant. */
export type MigrationIdParams = BitmapParams

/** A VM's swap disk in its launch. Capabilities are hex (16 bytes). */
export interface SwapLaunch {
  sizeBytes: number
  /** Page repositories granted to this VM (the controller asked their hosts' agents: overdriver.issue). */
  repositories?: RepositoryGrantJson[]
}

/** `tls`: the repository's TLS-PSK credential (it accepts nothing else; overdriver/repository/transport.ts). */
export interface RepositoryGrantJson { address: { host: string, port: number }, capability: string, tls: RepositoryTls }

/** overdriver.configure: the policy of the host's overload loop. */
export interface ConfigureParams {
  /** This host's name in the spec (events carry it; decide() compares VM hosts with it). */
  host: string
  policy: ControllerPolicy
  /** Hosts with the memory each keeps free as a migration target; none = a sustained overload is reported blocked. */
  hosts?: HostView[]
}

/** overdriver.repository: run a page repository on this host. */
export interface RepositoryParams {
  /** Address to listen on: the host's site address (127.0.0.1 in tests). */
  host: string
  /** Default 7709. */
  port?: number
  capacityBytes: number
}

/** Where a host's page repository listens and how many pages it holds. */
export interface RepositoryInfo { host: string, port: number, capacityPages: number }

/** overdriver.issue: a capability for `vm` at this host's repository. */
export interface IssueParams { vm: string, maxPages?: number }

/** overdriver.migrated: a migration Overdriver decided for `name` finished (ok) or failed. */
export interface MigratedParams { name: string, ok: boolean }

/** overdriver.table.adopt: the sector table the VM's source host exported (overdriver.table.export). */
export interface AdoptTableParams { name: string, table: SectorTableJson }
export interface AdoptTableResult { adopted: number, skipped: number, repositories: number }
/** overdriver.table.handover: whether the destination adopted the table the source exported. */
export interface HandoverParams { name: string, ok: boolean }
