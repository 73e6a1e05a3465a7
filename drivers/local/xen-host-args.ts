/**
 * Pure pieces of a `local` Xen host: QEMU (TCG) running Debian's Xen with a PV dom0
 * from images/xen-host. Command lines for Xen, dom0 and QEMU, and the per-launch cpio
 * archive (ssh host key, authorized_keys) appended to the image's initramfs.
 * No processes, no files: see xen-host.ts for the launcher.
 */
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { LocalDriverError } from '../../core/errors.ts'
import { writeNewc } from '../../images/guest/cpio.ts'

export interface XenHostVmConfig {
  /** Host name ([a-z0-9-], dom0 hostname and part of the QEMU process name). */
  name: string
  /** Per-run prefix; the QEMU process is named `<prefix>-<name>` (truncated to 15 characters by the kernel). */
  prefix: string
  /** Xen multiboot ELF. */
  xen: string
  /** dom0 kernel. */
  kernel: string
  /** dom0 initramfs (the image's, with the launch cpio appended). */
  initrd: string
  /** Tap interface QEMU attaches the dom0's eth0 to. */
  tap: string
  /** dom0 address with prefix length, e.g. 198.18.240.2/24 (on the dom0's bridge xenbr0). */
  address: string
  /** Default route of the dom0. */
  gateway?: string
  /** File QEMU writes the serial line to (Xen's console, dom0's hvc0 through it). */
  consoleLog: string
  /** Machine memory for Xen, MiB. Default 1024. */
  memoryMiB?: number
  /** dom0's share, MiB; the rest is for guests. Default 384. */
  dom0MemMiB?: number
  /** Virtual CPUs of the machine (TCG). Default 1. */
  cpus?: number
  /** QEMU CPU model (e.g. 'max', which under TCG includes AMD SVM with nested paging: HVM/PVH guests). Default QEMU's. */
  cpuModel?: string
  /** Extra Xen command line words (e.g. 'loglvl=all'). */
  xenExtra?: string[]
}

export const XEN_HOST_DEFAULTS = { memoryMiB: 1024, dom0MemMiB: 384, cpus: 1 } as const

/** The line dom0's init prints once xenstored, xenconsoled, the network and sshd are up. */
export const XEN_HOST_READY = 'SUPERCLOUD-XEN-HOST-READY'
export const XEN_HOST_FAILED = 'SUPERCLOUD-XEN-HOST-FAILED'

function check (ok: boolean, field: string, detail: string): void {
  if (!ok) throw new LocalDriverError(`Xen host: ${field}: ${detail}`)
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

function validate (cfg: XenHostVmConfig): Required<Pick<XenHostVmConfig, 'memoryMiB' | 'dom0MemMiB' | 'cpus'>> {
  check(/^[a-z0-9][a-z0-9-]{0,31}$/.test(cfg.name), 'name', `'${cfg.name}' must be 1-32 of [a-z0-9-]`)
  check(/^[a-z][a-z0-9]{0,7}$/.test(cfg.prefix), 'prefix', `'${cfg.prefix}' must be 1-8 of [a-z0-9] starting with a letter`)
  check(/^[A-Za-z0-9_.-]{1,15}$/.test(cfg.tap), 'tap', `'${cfg.tap}' is not an interface name`)
  const [ip, len, ...rest] = cfg.address.split('/')
  check(rest.length === 0 && ip !== undefined && IPV4.test(ip) && len !== undefined && /^\d+$/.test(len) && Number(len) <= 32,
    'address', `'${cfg.address}' must be <ipv4>/<prefix length>`)
  if (cfg.gateway !== undefined) check(IPV4.test(cfg.gateway), 'gateway', `'${cfg.gateway}' is not an IPv4 address`)
  for (const [field, path] of [['xen', cfg.xen], ['kernel', cfg.kernel], ['initrd', cfg.initrd], ['consoleLog', cfg.consoleLog]] as const) {
    check(path.startsWith('/') && !/\s/.test(path), field, `'${path}' must be an absolute path without spaces`)
  }
  const memoryMiB = cfg.memoryMiB ?? XEN_HOST_DEFAULTS.memoryMiB
  const dom0MemMiB = cfg.dom0MemMiB ?? XEN_HOST_DEFAULTS.dom0MemMiB
  const cpus = cfg.cpus ?? XEN_HOST_DEFAULTS.cpus
  check(Number.isInteger(memoryMiB) && memoryMiB >= 256, 'memoryMiB', `${memoryMiB} must be an integer >= 256`)
  check(Number.isInteger(dom0MemMiB) && dom0MemMiB >= 128 && dom0MemMiB < memoryMiB, 'dom0MemMiB', `${dom0MemMiB} must be an integer >= 128 and below memoryMiB (${memoryMiB})`)
  check(Number.isInteger(cpus) && cpus >= 1 && cpus <= 8, 'cpus', `${cpus} must be 1-8`)
  if (cfg.cpuModel !== undefined) check(/^[A-Za-z0-9_.,=+-]+$/.test(cfg.cpuModel), 'cpuModel', `'${cfg.cpuModel}' is not a CPU model`)
  for (const w of cfg.xenExtra ?? []) check(/^[A-Za-z0-9_.:=,+-]+$/.test(w), 'xenExtra', `'${w}' is not a plain command line word`)
  return { memoryMiB, dom0MemMiB, cpus }
}

/** Xen's own command line: console on the first serial port, dom0's memory fixed (no ballooning of dom0). */
export function xenCmdline (cfg: XenHostVmConfig): string {
  const { dom0MemMiB } = validate(cfg)
  return ['console=com1', 'com1=115200,8n1', `dom0_mem=${dom0MemMiB}M,max:${dom0MemMiB}M`, 'dom0_max_vcpus=1', ...(cfg.xenExtra ?? [])].join(' ')
}

/** dom0 kernel command line: console on Xen's hvc0, the sc.* words images/xen-host/init.sh reads. */
export function dom0Cmdline (cfg: XenHostVmConfig): string {
  validate(cfg)
  const words = ['console=hvc0', `sc.name=${cfg.name}`, `sc.net=${cfg.address}`]
  if (cfg.gateway !== undefined) words.push(`sc.gw=${cfg.gateway}`)
  return words.join(' ')
}

/** QEMU's -initrd value for multiboot: comma-separated modules, a literal comma doubled. */
export function multibootModules (modules: Array<{ path: string, cmdline?: string }>): string {
  return modules.map(m => [m.path, m.cmdline].filter(s => s !== undefined && s !== '').join(' ').replace(/,/g, ',,')).join(',')
}

/** A stable locally administered MAC for a host name (52:54:00 is QEMU's; 02: marks local). */
export function xenHostMac (name: string): string {
  const h = createHash('sha256').update(`xen-host:${name}`).digest()
  return ['02', 'fc', ...[...h.subarray(0, 4)].map(b => b.toString(16).padStart(2, '0'))].join(':')
}

/** Process name QEMU gives itself (Linux keeps 15 characters of it). */
export function xenHostProcessName (cfg: Pick<XenHostVmConfig, 'prefix' | 'name'>): string {
  return `${cfg.prefix}-${cfg.name}`.slice(0, 15)
}

/** argv for qemu-system-x86_64 (without the binary itself). */
export function xenHostQemuArgs (cfg: XenHostVmConfig): string[] {
  const { memoryMiB, cpus } = validate(cfg)
  return [
    '-name', `${cfg.prefix}-${cfg.name},process=${xenHostProcessName(cfg)}`,
    '-accel', 'tcg',
    '-machine', 'q35',
    '-m', String(memoryMiB),
    '-smp', String(cpus),
    ...(cfg.cpuModel !== undefined ? ['-cpu', cfg.cpuModel] : []),
    '-nodefaults',
    '-display', 'none',
    '-no-reboot',
    '-serial', `file:${cfg.consoleLog}`,
    '-kernel', cfg.xen,
    '-append', xenCmdline(cfg),
    '-initrd', multibootModules([{ path: cfg.kernel, cmdline: dom0Cmdline(cfg) }, { path: cfg.initrd }]),
    '-netdev', `tap,id=n0,ifname=${cfg.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=n0,mac=${xenHostMac(cfg.name)}`
  ]
}

export interface LaunchSecrets {
  /** OpenSSH private host key (ed25519), file contents. */
  hostKey: string
  hostKeyPub: string
  /** authorized_keys contents for root. */
  authorizedKeys: string
}

/** The gzip'ed newc archive appended to the image's initramfs at launch (the kernel unpacks both). */
export function launchCpio (s: LaunchSecrets): Buffer {
  for (const [field, text] of Object.entries(s)) check(text.trim() !== '', field, 'is empty')
  const nl = (t: string): Buffer => Buffer.from(t.endsWith('\n') ? t : `${t}\n`)
  return gzipSync(writeNewc([
    { type: 'dir', path: 'etc', mode: 0o755 },
    { type: 'dir', path: 'etc/ssh', mode: 0o755 },
    { type: 'file', path: 'etc/ssh/ssh_host_ed25519_key', data: nl(s.hostKey), mode: 0o600 },
    { type: 'file', path: 'etc/ssh/ssh_host_ed25519_key.pub', data: nl(s.hostKeyPub), mode: 0o644 },
    { type: 'dir', path: 'root', mode: 0o700 },
    { type: 'dir', path: 'root/.ssh', mode: 0o700 },
    { type: 'file', path: 'root/.ssh/authorized_keys', data: nl(s.authorizedKeys), mode: 0o600 }
  ]))
}

/** Reads the ready / failed marker out of the console log text; undefined while neither appeared. */
export function readyState (consoleText: string, name: string): { ready: true } | { ready: false, detail: string } | undefined {
  for (const raw of consoleText.split(/\r?\n/)) {
    const line = raw.replace(/^.*?(SUPERCLOUD-XEN-HOST-)/, '$1').trim()
    if (line === `${XEN_HOST_READY} ${name}`) return { ready: true }
    if (line.startsWith(`${XEN_HOST_FAILED} ${name} `)) return { ready: false, detail: line.slice(`${XEN_HOST_FAILED} ${name} `.length) }
  }
  return undefined
}
