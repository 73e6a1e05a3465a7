/**
 * Hypervisor backends run guests on one host. They are used by the host agent
 * (blanket-manager/agent), never directly by the controller.
 */
import type { OperationOptions } from '../core/progress.ts'
import type { CertifiedKey, MigrationMode, MigrationProgress, MigrationSecurity } from '../core/migration.ts'

/** 'xen': guests are Xen domains (PVH) of the host's Xen (drivers/xen). */
export type AccelMode = 'kvm' | 'tcg' | 'xen'

export type GuestBoot =
  | { kind: 'kernel', kernel: string, initrd?: string, append: string }
  | { kind: 'disk' }

export interface GuestDisk {
  id: string
  path: string
  format: 'qcow2' | 'raw'
}

export interface GuestNic {
  id: string
  /** Existing TAP device name on the host the NIC is backed by. */
  tap: string
  mac: string
  /** MTU advertised to the guest (virtio-net host_mtu); undefined = default. */
  mtu?: number
}

export interface GuestDefinition {
  name: string
  cpus: number
  /** Guest memory size (the VM's requested memory), bytes. */
  memoryBytes: number
  /** Balloon target (the VM's allocated memory), bytes; undefined = no ballooning. */
  balloonTargetBytes?: number
  accel: AccelMode
  boot: GuestBoot
  disks: GuestDisk[]
  nics: GuestNic[]
  /** Directory for this guest's pidfile, QMP socket, serial socket and console log. */
  runDir: string
  /** Start paused, waiting for an incoming live migration (`-incoming defer`). */
  incoming?: boolean
  /**
   * A swap disk served over NBD on a unix socket (Overdriver's swap export), attached as the
   * disk after `disks` (the guest sees it as swapDeviceName(disks.length)).
   */
  swap?: { socketPath: string, exportName?: string, reconnectDelaySec?: number }
  /**
   * What of `cpus`, `memoryBytes`, `disks` and `nics` was hot-plugged into the running guest
   * (QEMU): a migration's destination is launched with the same devices in the same places.
   * Undefined: everything as at a cold boot.
   */
  plugged?: GuestPlugged
}

/** The hot-plugged part of a guest (drivers/qemu/hotplug.ts); the rest is its cold boot. */
export interface GuestPlugged {
  /** vCPUs at boot; cpus above are hot-plugged vCPUs. */
  bootCpus: number
  /** Memory at boot; the rest is hot-plugged DIMMs of these sizes, in order. */
  bootMemoryBytes: number
  dimmBytes: number[]
  /** Hot-plugged disks and NICs (by device id) -> the hot-plug port they sit on. */
  ports: Record<string, number>
}

/** A change to a running guest (HypervisorBackend.liveUpdate): `to` is the guest after it. */
export interface LiveUpdate {
  from: GuestDefinition
  to: GuestDefinition
}

export type GuestRunState = 'running' | 'paused' | 'shutdown' | 'absent' | 'other'

export interface GuestStatus {
  name: string
  state: GuestRunState
  pid?: number
  /** QEMU's own run state string (e.g. "running", "inmigrate") when known. */
  detail?: string
}

export interface GuestStats {
  /** Guest memory (requested), bytes. */
  memoryBytes: number
  /** Memory currently left to the guest by the balloon, bytes. */
  balloonActualBytes: number
  /** Resident set size of the guest's process on the host, bytes. */
  residentBytes: number
}

/** Progress of a migration a backend runs itself (Xen: `xl migrate`). */
export interface SelfMigrationProgress {
  /** e.g. 'memory' (copy rounds), 'switchover' (guest suspended, last pages), 'arrived'. */
  phase: string
  message: string
  /** Bytes sent so far, when the backend reports them. */
  sentBytes?: number
  /** Pre-copy round (0 = the first full copy), when known. */
  iteration?: number
}

export interface SelfMigrationResult {
  totalMs: number
  /** Bytes of guest memory sent, when the backend reports them. */
  sentBytes?: number
  /** Pre-copy rounds, when known. */
  iterations?: number
  /** The backend's own log of the migration (tail), for the operator. */
  log?: string
}

/**
 * One end of a SelfMigration's TLS stream: its own certificate and key, and the other end's
 * certificate, pinned (the only one it accepts). Absent: the stream is clear text.
 */
export interface StreamEnd {
  self: CertifiedKey
  peerCert: string
}

/**
 * Live migration run by a toolstack itself (Xen: `xl migrate` / `xl migrate-receive`), under
 * the Xen backend's BackendMigration. The stream runs over TCP from the source host to
 * `listenIp:port` on the destination, in TLS when `tls` is given to both ends. The guest arrives **paused**: it runs at the
 * destination only after `resume`, so the caller can re-point the network in between.
 */
export interface SelfMigration {
  /**
   * Destination: make the guest's devices ready (its NIC taps: their names and bridges) and
   * listen on listenIp:port for one incoming stream. Returns the guest configuration the source
   * must send (so the guest lands in this host's bridges and paths), and `arrived`, which
   * resolves once the guest is here, paused, and rejects when the stream failed, or on `signal`.
   */
  receive (def: GuestDefinition, p: { listenIp: string, port: number, signal?: AbortSignal, tls?: StreamEnd }): Promise<{ config: string, arrived: Promise<void> }>
  /**
   * Source: send the running guest to destIp:port with `config`. Resolves when the destination
   * holds it (paused) and the guest is gone here. On failure or abort the guest keeps running here.
   */
  send (name: string, runDir: string, p: { destIp: string, port: number, config: string, signal?: AbortSignal, onProgress?: (p: SelfMigrationProgress) => void, tls?: StreamEnd }): Promise<SelfMigrationResult>
  /** Destination: let the arrived guest run. Idempotent. */
  resume (name: string, runDir: string): Promise<void>
}

/** Outcome of a live migration, as the source reports it. */
export interface MigrationSummary {
  mode: MigrationMode
  /** Whether postcopy was used (auto/hybrid may or may not). */
  postcopy: boolean
  totalMs: number
  /** The measured (QEMU) or estimated (Xen: last round to end of stream) downtime. */
  downtimeMs: number
  sentBytes: number
  iterations: number
  /** Bytes of disk copied (mirror and incremental passes); part of sentBytes. */
  diskSentBytes: number
  /** Sum of the migrated disks' virtual sizes. */
  diskSizeBytes: number
  /** Whether the destination reused the disk image the VM left there (only dirty blocks sent). */
  diskReused: boolean
  /**
   * How long the source held both copies paused at pre-switchover (disk jobs finished, the
   * caller's hook run) before the switch: part of `downtimeMs`.
   */
  switchoverHoldMs?: number
}

/** A guest as a migration knows it: where its files are and what it carries (from its launch). */
export interface MigratingGuest {
  name: string
  runDir: string
  /** Ids of its GuestDefinition.disks, in order. */
  diskIds: string[]
  /** It has an Overdriver swap disk (its contents move with the guest). */
  swap: boolean
  /** Guest memory, bytes (progress before the hypervisor reports figures). */
  memoryBytes: number
}

/** How the destination listens for a guest (prepareIncoming). */
export interface IncomingMigration {
  listenIp: string
  mode: MigrationMode
  /** Picks a free port on the destination, not one in `avoid`. */
  port: (avoid: number[]) => Promise<number>
  /** The migration's TLS credentials: only a source presenting them is admitted (QEMU: required, see OutgoingMigration.tls). */
  tls?: MigrationSecurity
}

/** Where the source sends a guest to, as the destination's prepareIncoming set it up. */
export interface IncomingEndpoint {
  migrationPort: number
  /** Port of the destination's disk exports; 0 when the backend moves no disks. */
  nbdPort: number
  /** A backend whose toolstack moves the guest (Xen): the guest configuration the source must send. */
  selfConfig?: string
}

export interface OutgoingMigration {
  destIp: string
  /**
   * The migration's TLS credentials, the same the destination's prepareIncoming got (QEMU:
   * required; SC_MIGRATION_TLS_MISSING without them; 'off' = clear text, asked explicitly).
   * Xen's streams do not use them yet.
   */
  tls?: MigrationSecurity
  migrationPort: number
  nbdPort: number
  mode: MigrationMode
  maxDowntimeMs: number
  /** Bytes/s; undefined = unlimited. */
  bandwidth?: number
  deadlineMs: number
  /** Wait at the switchover until `continue(name)` (at most 30 s; then the migration fails). */
  holdAtSwitchover: boolean
  /** The destination holds the images of these disk nodes as of migration `id` (disks capability): send only their dirty blocks. */
  incremental?: { id: string, nodes: string[] }
  /** IncomingEndpoint.selfConfig of the destination. */
  selfConfig?: string
  /** Cancels like `cancel(name)`. */
  signal?: AbortSignal
  onProgress?: (p: MigrationProgress & { message?: string }) => void
  /** The switchover is reached (both copies paused, or the guest paused at the destination); before the hold. */
  onSwitchover?: () => void
}

/** Dirty-bitmap state of a guest's disks (disks capability). */
export interface DiskDirtyStatus {
  /** Every node asked about carries the migration's bitmap. */
  present: boolean
  /** Sum of the bitmaps' dirty counts (bytes written since they started). */
  dirtyBytes: number
  /** Sum of the disks' virtual sizes. */
  sizeBytes: number
}

/**
 * Capability of BackendMigration: the guest's local disks move with it (mirrored to the
 * destination's exports) and the guest's writes can be recorded from the arrival on (dirty
 * bitmaps), so a return copies only those blocks (blanket-manager/migration/disk-reuse.ts).
 */
export interface MigrationDisks {
  /** The name migrations, bitmaps and the agent protocol give the guest disk with GuestDisk id `diskId`. */
  node (diskId: string): string
  /** Destination, at the switchover hold: record the guest's writes on `nodes` under migration `id`. */
  markArrival (guest: MigratingGuest, nodes: string[], id: string): Promise<void>
  /** Whether every one of `nodes` records writes under migration `id`, their dirty bytes and sizes. */
  dirtyStatus (guest: MigratingGuest, nodes: string[], id: string): Promise<DiskDirtyStatus>
}

/**
 * Live migration of a guest between two instances of one backend (two hosts). Destination:
 * prepareIncoming, then finish once the source's migrateOut returned. Source: migrateOut; while
 * it runs, `cancel` stops it (the guest keeps running at the source), and `continue` releases
 * a migration held at the switchover. Any failure or cancel before the switch leaves the guest
 * running at the source.
 */
export interface BackendMigration {
  /** Present when disks move with the guest and writes can be recorded for a return (QEMU). */
  readonly disks?: MigrationDisks
  /** Throws SC_MIGRATION_MODE_UNSUPPORTED when this backend does not migrate in `mode`. */
  checkMode (mode: MigrationMode): void
  /**
   * Destination: `def` (devices ready) waits here for the guest's state, listening on
   * `listenIp`; `port` picks free ports (not those in `avoid`). The caller destroys the guest
   * when this throws.
   */
  prepareIncoming (def: GuestDefinition, p: IncomingMigration): Promise<IncomingEndpoint>
  /** Source: moves the running guest to the destination; resolves after the switch (the guest runs, or is let run by `finish`, there). */
  migrateOut (guest: MigratingGuest, p: OutgoingMigration): Promise<MigrationSummary>
  /** Lets a migration held at the switchover go on; SC_MIGRATION_NOT_HELD when `name` is not held. */
  continue (name: string): void
  /** Cancels the outgoing migration of `name`; SC_MIGRATION_NOT_RUNNING when there is none. */
  cancel (name: string): void
  /** Whether an outgoing migration of `name` runs in this backend. */
  active (name: string): boolean
  /** Destination, after the source's migrateOut returned: the guest runs here (disk exports stopped, a paused arrival resumed). */
  finish (guest: MigratingGuest): Promise<void>
}

export interface HypervisorBackend {
  readonly kind: 'qemu' | 'xen'
  /** Live migration between two hosts running this backend. */
  readonly migration: BackendMigration
  /** Format of the data disk images this backend opens (Xen's blkback: raw; QEMU: qcow2). */
  readonly diskFormat: 'qcow2' | 'raw'
  /** The device the guest sees its swap disk as, plugged after `diskCount` data disks (e.g. /dev/vdb). */
  swapDeviceName (diskCount: number): string
  /** Check the hypervisor binary exists; returns its version. Throws a typed error when missing. */
  version (): Promise<string>
  /**
   * Decide the acceleration mode: KVM only when a test guest actually boots under it
   * within `timeoutMs`, else TCG.
   */
  detectAccel (probe: { kernel: string, initrd: string, readyMarker: string, timeoutMs: number, runDir: string }, opts?: OperationOptions): Promise<{ mode: AccelMode, reason: string }>
  /** Start a guest (idempotent: if it is already running with this name, returns its status). */
  start (def: GuestDefinition, opts?: OperationOptions): Promise<GuestStatus>
  /** Ask the guest to power off (ACPI), then kill after `timeoutMs`. */
  stop (name: string, runDir: string, timeoutMs: number): Promise<void>
  /** Kill the guest process and remove its run files. Idempotent. */
  destroy (name: string, runDir: string): Promise<void>
  status (name: string, runDir: string): Promise<GuestStatus>
  setBalloon (name: string, runDir: string, bytes: number): Promise<void>
  stats (name: string, runDir: string): Promise<GuestStats>
  /** Path of the unix socket carrying the guest's serial console (raw byte stream). */
  consoleSocket (runDir: string): string
  /** Last `lines` lines of the guest's console log. */
  consoleTail (runDir: string, lines: number): Promise<string>
  /**
   * Waits until `pattern` appears in the guest's console log (of its current boot). Throws
   * GuestBootError with the console tail on timeout (or when the guest's process exits first),
   * CancelledError on `signal`.
   */
  waitForConsole (name: string, runDir: string, pattern: string | RegExp, timeoutMs: number, signal?: AbortSignal): Promise<void>
  /**
   * Changes the running guest from `u.from` to `u.to` without a reboot (hot-plug); absent when the
   * backend cannot. Throws SC_LIVE_UPDATE_UNSUPPORTED (nothing changed) for an edit it cannot do live.
   * Answers what is hot-plugged now (`u.to` runs with it).
   */
  liveUpdate?: (u: LiveUpdate, opts?: OperationOptions) => Promise<GuestPlugged>
}
