/**
 * Hypervisor backends run guests on one host. They are used by the host agent
 * (blanket-manager/agent), never directly by the controller.
 */
import type { OperationOptions } from '../blanket-manager/progress.ts'

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

export interface HypervisorBackend {
  readonly kind: 'qemu' | 'xen'
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
