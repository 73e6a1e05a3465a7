/**
 * Hypervisor backends run guests on one host. They are used by the host agent
 * (blanket-manager/agent), never directly by the controller.
 */
import type { OperationOptions } from '../core/progress.ts'

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
   * A swap disk served over NBD on a unix socket (Overdriver's swap export), attached as a
   * virtio disk after `disks` (so the guest sees it as the next /dev/vdX: virtioDiskName(disks.length)).
   */
  swap?: { socketPath: string, exportName?: string, reconnectDelaySec?: number }
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
 * Live migration for backends whose toolstack moves a guest itself (Xen: `xl migrate` /
 * `xl migrate-receive`); QEMU's migration is driven by the host agent over QMP
 * (drivers/qemu/migration.ts). The stream runs over TCP from the source host to
 * `listenIp:port` on the destination. The guest arrives **paused**: it runs at the
 * destination only after `resume`, so the caller can re-point the network in between.
 */
export interface SelfMigration {
  /**
   * Destination: make the guest's devices ready (its NIC taps: their names and bridges) and
   * listen on listenIp:port for one incoming stream. Returns the guest configuration the source
   * must send (so the guest lands in this host's bridges and paths), and `arrived`, which
   * resolves once the guest is here, paused, and rejects when the stream failed, or on `signal`.
   */
  receive (def: GuestDefinition, p: { listenIp: string, port: number, signal?: AbortSignal }): Promise<{ config: string, arrived: Promise<void> }>
  /**
   * Source: send the running guest to destIp:port with `config`. Resolves when the destination
   * holds it (paused) and the guest is gone here. On failure or abort the guest keeps running here.
   */
  send (name: string, runDir: string, p: { destIp: string, port: number, config: string, signal?: AbortSignal, onProgress?: (p: SelfMigrationProgress) => void }): Promise<SelfMigrationResult>
  /** Destination: let the arrived guest run. Idempotent. */
  resume (name: string, runDir: string): Promise<void>
}

export interface HypervisorBackend {
  readonly kind: 'qemu' | 'xen'
  /** Present when the backend runs live migration itself (Xen); absent: the agent drives QEMU's over QMP. */
  readonly selfMigration?: SelfMigration
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
}
