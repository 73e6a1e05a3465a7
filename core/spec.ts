/**
 * The normalized, validated supercloud spec. `loadSpec` (blanket-manager/specfile/load.ts) turns a
 * supercloud.yaml into this shape; everything downstream uses only these types.
 * Sizes are bytes, durations milliseconds, bandwidths bits per second.
 */

export interface Spec {
  /** Absolute path of the file the spec came from. */
  file: string
  /** Supercloud name: `name:` in the file, default the file's directory name. [a-z0-9-], max 20 chars. */
  name: string
  sites: Record<string, SiteSpec>
  wan: WanSpec
  hosts: Record<string, HostSpec>
  images: Record<string, ImageSpec>
  vms: Record<string, VmSpec>
  /** The VirtualWire network (switches, wires, extenders); empty when the file has no `network:`. */
  network: NetworkSpec
  /** Absolute path of the user's EC2 price table (`prices:`, drivers/ec2/pricing.ts); absent = the built-in table. */
  prices?: string
  /** The Overdriver policy (`overdriver:`, docs/overdriver.md); absent when the file has no such section. */
  overdriver?: OverdriverPolicy
  /** Where the supercloud's state lives (`state:`): a postgres:// URL shared by a team; absent = SUPERCLOUD_STATE, else the SQLite file. */
  state?: string
  /** Operators whose SSH public keys the hosts authorize (`operators:`, besides `supercloud access grant`); absent = none. */
  operators?: OperatorSpec[]
}

/** An operator of the spec's `operators:`: a public key given inline (`key`) or read from a file (`keyFile`). */
export interface OperatorSpec {
  name: string
  /** The OpenSSH public key line; read from `keyFile` when the spec was loaded from disk. */
  key?: string
  /** Absolute path of the public key file, when given so. */
  keyFile?: string
  /** Where it is in the spec, for messages (`operators[1].keyFile`). */
  field: string
}

export interface SiteSpec {
  name: string
  /** IPv4 CIDR of the site network, e.g. 198.18.1.0/24 (required when the site has local hosts). */
  subnet?: string
  /** Gateway address inside the subnet; default: first address of the subnet. */
  gateway?: string
}

/** The emulated WAN joining local sites. */
export interface WanSpec {
  /** Per-direction rate limit in bits/s (tbf); undefined = unlimited. */
  bandwidthBps?: number
  /** One-way delay added by the user-space relay, ms; 0 = none. */
  delayMs: number
}

export type DriverName = 'local' | 'ssh' | 'ec2'
export type Accel = 'auto' | 'kvm' | 'tcg'
export type HypervisorKind = 'qemu' | 'xen'

export interface HostSpec {
  name: string
  site: string
  driver: DriverName
  /** vCPUs offered to guests. Default 2. */
  cpus: number
  /** Memory offered to guests in bytes. Default 2G. */
  memoryBytes: number
  /**
   * `qemu` (KVM or TCG, per `accel`) or `xen` (guests are PVH domains of the host's Xen: a
   * `local` host is then a Xen machine under QEMU, docs/xen.md; an `ssh` host must run Xen).
   */
  hypervisor: { backend: HypervisorKind, accel: Accel }
  /** Options of the `local` driver. */
  local?: { address?: string }
  /** Options of the `ssh` driver. */
  ssh?: { address: string, port: number, user: string, key: string, guestBridge?: string, /** The host's SSH host key (an OpenSSH public key line or a SHA256:... fingerprint), pinned from the start. */ hostKey?: string }
  /** Options of the `ec2` driver (docs/ec2.md). */
  ec2?: Ec2HostOptions
}

/** An EC2 instance as a host. */
export interface Ec2HostOptions {
  region: string
  /** AMI id in that region (stock Debian 12 or Ubuntu; the bootstrap user-data does the rest). */
  ami: string
  instanceType: string
  /** Launch as a spot instance (one-time, terminate on interruption). */
  spot?: boolean
  /**
   * The spot pool (`spot: { maxPrice, instanceTypes }`, which also means `spot: true`): the most
   * to pay per hour (USD; default EC2's, the on-demand price), and other instance types a
   * replacement host of this one may be launched as when its VMs have nowhere else to go.
   */
  spotPool?: Ec2SpotPool
  /** CIDR allowed to SSH in; default the operator's address as seen from outside (/32). */
  sshFrom?: string
  subnetId?: string
  /** EC2 API endpoint override (tests, private endpoints); default the region's public endpoint. */
  endpoint?: string
  /** SSH user; default root (the user-data authorizes the supercloud key for root). */
  user?: string
}

export interface Ec2SpotPool {
  /** USD per hour. */
  maxPrice?: number
  /** Instance types to choose from for replacements (the host's own first is not repeated here). */
  instanceTypes: string[]
}

export type ImageSpec =
  | { name: string, kind: 'builtin', builtin: 'tiny' }
  | { name: string, kind: 'qcow2', path: string }
  | { name: string, kind: 'kernel', kernel: string, initrd?: string, append?: string }

export interface DiskSpec {
  name: string
  sizeBytes: number
}

export interface NicSpec {
  name: string
  /** IPv4 address with prefix, e.g. 198.18.1.101/24. Allocated from the host's site subnet when absent. */
  address?: string
  mac?: string
}

export interface VmSpec {
  name: string
  image: string
  /** Host placement; when absent the planner places the VM (first fit decreasing by memory). */
  host?: string
  cpus: number
  memory: { requestedBytes: number, allocatedBytes: number }
  disks: DiskSpec[]
  nics: NicSpec[]
  /**
   * The guest's default gateway. Default: its site's gateway when one of its NICs is on the
   * site network; none when all its NICs are VirtualWire NICs (the user's network, the user's routes).
   */
  gateway?: string
  /**
   * Makes the VM a transparent L2 firewall (the guest image's l2fw) between two of its NICs:
   * `drop` rules first, then `allow` rules, then `default` (l2fw match syntax: arp, icmp, udp:7, vlan:10+ipv4...).
   */
  firewall?: { between: [string, string], allow: string[], drop: string[], default: 'allow' | 'drop' }
  /** Size of the VM's swap disk (`swap: 256M`), served by Overdriver's NBD export on its host; absent = no swap. */
  swapBytes?: number
}

/** The user's virtual network (VirtualWire, seed 002 ch. 5). See virtualwire/topology/wires.ts for its rules. */
export interface NetworkSpec {
  /** UDP port of the connector data plane (VXLAN wire format) on every host. Default 4789. */
  port: number
  /** Domain-0 switches: a bridge on a host. */
  switches: Record<string, SwitchSpec>
  /** Point-to-point wires between VM NICs and switch ports, in file order. */
  wires: WireSpec[]
  /** Site name → its extender (the encrypted tunnel joining it to the other sites). */
  extenders: Record<string, ExtenderSpec>
}

export interface SwitchSpec {
  name: string
  host: string
}

export interface ExtenderSpec {
  site: string
  /** Host of the site that terminates the extender tunnel. */
  gateway: string
}

/** One side of a wire in the spec: a VM NIC (`web1.eth0`) or a switch port (`sw1.p1`). */
export interface WireEnd {
  component: string
  port: string
}

export interface WireSpec {
  a: WireEnd
  b: WireEnd
}

/** Overdriver's overload rule (overdriver/decision/decide.ts): measured every interval, sustained over a window. */
export interface OverloadPolicy {
  intervalMs: number
  overloadOpsPerSec: number
  window: { size: number, sustained: number }
  initialThresholdMs: number
  adaptive: { enabled: boolean, baseCount: number }
  quietIntervals: number
  /** Intervals after a VM arrived (or its allocation changed) whose rates are not observed; default 3. */
  arrivalGraceIntervals?: number
  /**
   * How long a decided migration may stay without a report (migrated / migrationFailed) before
   * it counts as failed and may be decided again; default 10 min.
   */
  migrationTimeoutMs?: number
}

/** The `overdriver:` section (overdriver/decision/policy.ts parses it). */
export interface OverdriverPolicy extends OverloadPolicy {
  confidence: number
  repositories: {
    /** Hosts that run a page repository. */
    hosts: string[]
    /** Host → bytes its repository may hold (a multiple of 4 KiB). */
    memoryBytes: Record<string, number>
  }
}
