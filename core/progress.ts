/**
 * Progress reporting shared by every long-running operation. Each step has a subject (`host h1`,
 * `vm web1`, `image tiny`) and a phase from one closed list, so the event stream's
 * `operation.progress` events and what a terminal prints use the same words.
 */

/** The steps of bringing hosts, images and VMs up and down, and of moving VMs. */
export const PROGRESS_PHASES = [
  // hosts: cloud drivers, bootstrap, the Blanket layer
  'network', 'site', 'wan', 'uplink', 'namespace', 'sshd', 'provision', 'launch', 'ssh', 'keys', 'check', 'probe', 'install', 'bootstrap', 'agent', 'qemu', 'kvm', 'xen', 'host-image', 'ready', 'restart', 'route',
  // Xen boot of a real server (blanket-manager/bootstrap/xen-boot.ts)
  'xen-check', 'xen-prepare', 'xen-install', 'xen-regenerate', 'xen-arm', 'xen-reboot', 'xen-reconnect', 'xen-verify', 'xen-agent', 'xen-commit',
  // images
  'image', 'inputs', 'cached', 'compile', 'initramfs', 'kernel', 'done',
  // VMs
  'create', 'boot', 'running', 'balloon', 'hotplug', 'swap', 'start', 'wait', 'up', 'sync', 'delete', 'destroy', 'stop',
  // VirtualWire
  'virtualwire', 'extender', 'firewall',
  // migration
  'preparing', 'migrate', 'disks', 'memory', 'switchover', 'handover', 'adopt', 'arrived', 'recover', 'cancel', 'evacuate'
] as const

export type ProgressPhase = typeof PROGRESS_PHASES[number]

export interface ProgressEvent {
  /** What is being worked on, e.g. "host host-a" or "vm web1". */
  subject: string
  phase: ProgressPhase
  message: string
  /** 0..1 when known. */
  fraction?: number
}

export interface OperationOptions {
  signal?: AbortSignal
  onProgress?: (ev: ProgressEvent) => void
}
