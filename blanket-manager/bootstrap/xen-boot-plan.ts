/**
 * Host bootstrap to Xen on a real server (issue #6), the pure part: can this host run Xen
 * (from facts gathered over SSH by drivers/host-bootstrap/xen-boot.sh `facts`), which GRUB entry is
 * Xen's and which one is the fallback, the step plan, and what a host that came back after
 * the trial reboot tells us. No I/O here; the orchestration is in xen-boot.ts.
 */

/** What `xen-boot.sh facts` reports, parsed. */
export interface XenHostFacts {
  arch: string
  kernelRelease: string
  osId: string
  osVersionId: string
  cpuFlags: string[]
  /** The "vmx flags" line of /proc/cpuinfo (kernels >= 5.8); empty on AMD and older kernels. */
  vmxFlags: string[]
  /** `systemd-detect-virt`: none, kvm, amazon, google, microsoft, xen, docker, ... ('' when unknown). */
  virt: string
  /** /sys/class/dmi/id/sys_vendor, e.g. "Amazon EC2", "Google", "Xen", "Dell Inc.". */
  sysVendor: string
  /** /sys/class/dmi/id/product_name, e.g. "m5.large", "c5.metal", "HVM domU". */
  productName: string
  /** /sys/hypervisor/type ("xen" in any Xen domain). */
  hypervisorType: string
  /** /proc/xen/capabilities ("control_d" in a dom0, "" in a domU), undefined when absent. */
  xenCaps?: string
  xlInfo: 'ok' | 'fail' | 'absent'
  efi: boolean
  secureBoot: 'yes' | 'no' | 'unknown'
  /** /boot/grub/grub.cfg exists. */
  grubCfg: boolean
  /** grub-reboot / grub-set-default are installed (grub2-common). */
  grubTools: boolean
  /** grub-probe of the directory holding grubenv ('' when it could not tell). */
  grubenvFs: string
  grubenvAbstraction: string[]
  /** Kernel releases in /boot built with CONFIG_XEN_DOM0=y. */
  dom0Kernels: string[]
  apt: boolean
  bootId: string
}

/** Parses `key=value` lines (values run to the end of the line). */
export function parseKeyValues (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf('=')
    if (i <= 0) continue
    const key = line.slice(0, i).trim()
    if (!/^[a-z_][a-z0-9_]*$/i.test(key)) continue
    out[key] = line.slice(i + 1).trim()
  }
  return out
}

const words = (s: string | undefined): string[] => (s ?? '').split(/\s+/).filter(w => w !== '')

export function parseHostFacts (text: string): XenHostFacts {
  const kv = parseKeyValues(text)
  const caps = kv.xen_caps
  const sb = kv.secure_boot
  const xl = kv.xl_info
  return {
    arch: kv.arch ?? '',
    kernelRelease: kv.kernel_release ?? '',
    osId: kv.os_id ?? '',
    osVersionId: kv.os_version_id ?? '',
    cpuFlags: words(kv.cpu_flags),
    vmxFlags: words(kv.vmx_flags),
    virt: kv.virt ?? '',
    sysVendor: kv.sys_vendor ?? '',
    productName: kv.product_name ?? '',
    hypervisorType: kv.hypervisor_type ?? '',
    xenCaps: caps === undefined || caps === 'absent' ? undefined : caps,
    xlInfo: xl === 'ok' || xl === 'fail' ? xl : 'absent',
    efi: kv.efi === 'yes',
    secureBoot: sb === 'yes' || sb === 'no' ? sb : 'unknown',
    grubCfg: kv.grub_cfg === 'yes',
    grubTools: kv.grub_tools === 'yes',
    grubenvFs: kv.grubenv_fs ?? '',
    grubenvAbstraction: words(kv.grubenv_abstraction),
    dom0Kernels: words(kv.dom0_kernels),
    apt: kv.apt === 'yes',
    bootId: kv.boot_id ?? ''
  }
}

export type XenCapability =
  | { ok: true, action: 'boot-into-xen', packages: string[], warnings: string[], summary: string }
  | { ok: true, action: 'already-xen', warnings: string[], summary: string }
  | { ok: false, reason: string }

const CONTAINERS = new Set(['docker', 'podman', 'lxc', 'lxc-libvirt', 'openvz', 'systemd-nspawn', 'rkt', 'wsl', 'proot', 'pouch', 'container-other'])
const ALTERNATIVE = 'use a bare-metal server or `hypervisor: qemu`'

/** "an Amazon EC2 m5.large", "a Google Compute Engine VM (kvm)", "a Dell Inc. PowerEdge R640". */
function describe (f: XenHostFacts): string {
  if (f.sysVendor === 'Amazon EC2') return `an Amazon EC2 ${f.productName !== '' ? f.productName : 'instance'}`
  if (f.sysVendor === 'Google') return `a Google Compute Engine VM${f.virt !== '' ? ` (${f.virt})` : ''}`
  if (f.sysVendor === 'Microsoft Corporation' && f.productName === 'Virtual Machine') return 'an Azure / Hyper-V VM'
  const dmi = [f.sysVendor, f.productName].filter(s => s !== '').join(' ')
  if (f.virt !== '' && f.virt !== 'none') return `a ${f.virt} virtual machine${dmi !== '' ? ` (${dmi})` : ''}`
  return dmi !== '' ? `a ${dmi}` : 'a machine'
}

const isEc2Metal = (f: XenHostFacts): boolean => f.sysVendor === 'Amazon EC2' && /\.metal(-\d+xl)?$/.test(f.productName)

/** Debian packages that give Xen and `xl` on this host's release (plus a dom0-capable kernel). */
export function xenPackages (f: XenHostFacts): string[] {
  const major = Number.parseInt(f.osVersionId, 10)
  const pkgs = major === 12 ? ['xen-hypervisor-4.17-amd64', 'xen-utils-4.17'] : ['xen-system-amd64']
  if (f.dom0Kernels.length === 0) pkgs.push('linux-image-amd64')
  if (!f.grubTools) pkgs.push('grub2-common')
  return pkgs
}

/**
 * Whether Xen can become this host's hypervisor, and if not, why (one sentence an operator
 * can act on). The rules are documented in docs/xen-real-hosts.md.
 */
export function xenCapability (host: string, f: XenHostFacts): XenCapability {
  const who = `host ${host} is ${describe(f)}`
  const caps = f.xenCaps
  const dom0 = caps !== undefined && /\bcontrol_d\b/.test(caps)
  if (dom0 && f.xlInfo === 'ok') {
    return { ok: true, action: 'already-xen', warnings: [], summary: `host ${host} already runs under Xen as its dom0 (\`xl info\` works): nothing to install` }
  }
  if (dom0) {
    return { ok: false, reason: `host ${host} runs as a Xen dom0 but \`xl info\` ${f.xlInfo === 'absent' ? 'is not installed' : 'fails'}: install xen-utils and start xenstored (xen-utils-common's xen service), then retry` }
  }
  const xenGuest = caps !== undefined || f.hypervisorType === 'xen' || f.virt === 'xen'
  if (xenGuest) {
    const kind = f.productName === 'HVM domU' || (f.cpuFlags.includes('hypervisor') && f.sysVendor === 'Xen') ? 'a Xen HVM guest' : 'a Xen guest (PV or PVH domU)'
    const hint = f.productName === 'HVM domU' ? ' (older Xen-based clouds and EC2 instance types such as t2, m4, c4 are Xen HVM guests)' : ''
    return { ok: false, reason: `host ${host} is ${kind}${hint}: Xen cannot run inside a Xen guest (no nested HVM); ${ALTERNATIVE}` }
  }
  if (CONTAINERS.has(f.virt)) {
    return { ok: false, reason: `host ${host} runs in a container (${f.virt}): it has no kernel or boot loader of its own to put Xen under; ${ALTERNATIVE}` }
  }
  if (f.arch !== 'x86_64') {
    return { ok: false, reason: `host ${host} is ${f.arch !== '' ? f.arch : 'of an unknown architecture'}: the Xen bootstrap installs Debian's amd64 Xen (x86_64 only)` }
  }
  if (f.osId !== 'debian' || !(Number.parseInt(f.osVersionId, 10) >= 12)) {
    const os = f.osId !== '' ? `${f.osId} ${f.osVersionId}`.trim() : 'not Debian'
    return { ok: false, reason: `host ${host} runs ${os}: the Xen bootstrap supports Debian 12 (bookworm) or newer (Debian's packages and GRUB scripts); ${ALTERNATIVE}` }
  }
  const intel = f.cpuFlags.includes('vmx')
  const amd = f.cpuFlags.includes('svm')
  const vm = f.virt !== '' && f.virt !== 'none'
  if (!intel && !amd) {
    if (f.sysVendor === 'Amazon EC2' && !isEc2Metal(f)) {
      return { ok: false, reason: `${who} (a KVM/Nitro guest without nested virtualization): Xen cannot run as its hypervisor; use a *.metal instance or \`hypervisor: qemu\`` }
    }
    if (vm || f.cpuFlags.includes('hypervisor')) {
      return { ok: false, reason: `${who} and its CPU shows no vmx/svm (no nested virtualization): Xen needs hardware virtualization; enable nested virtualization (GCE: --enable-nested-virtualization on an Intel machine type; Azure: a size with nested virtualization) or ${ALTERNATIVE}` }
    }
    return { ok: false, reason: `${who} and its CPU shows no vmx/svm: hardware virtualization (Intel VT-x / AMD-V) is off in the firmware setup or absent; Xen needs it for supercloud's PVH guests` }
  }
  // PVH guests (the only kind supercloud runs, for live migration) need HAP: EPT or NPT.
  const hap = intel ? (f.vmxFlags.includes('ept') || f.cpuFlags.includes('ept')) : f.cpuFlags.includes('npt')
  if (!hap) {
    return { ok: false, reason: `${who} and its CPU has ${intel ? 'VT-x without EPT' : 'AMD-V without NPT'} (no second-level address translation): supercloud's PVH guests need Xen's HAP; ${ALTERNATIVE}` }
  }
  if (!f.grubCfg) {
    return {
      ok: false,
      reason: f.efi
        ? `host ${host} boots without GRUB (EFI stub or systemd-boot: no /boot/grub/grub.cfg): the one-shot Xen boot needs GRUB's grub-reboot; install grub-efi-amd64 first or ${ALTERNATIVE}`
        : `host ${host} has no /boot/grub/grub.cfg: its boot loader is not GRUB 2, which the one-shot Xen boot needs`
    }
  }
  if (f.secureBoot === 'yes') {
    return { ok: false, reason: `host ${host} boots with UEFI Secure Boot on: GRUB in lockdown refuses to load Xen (Debian's Xen is not signed); turn Secure Boot off in the firmware / instance settings or ${ALTERNATIVE}` }
  }
  const unwritable = f.grubenvAbstraction.find(a => ['lvm', 'diskfilter', 'mdraid09', 'mdraid1x', 'raid5rec', 'raid6rec', 'luks', 'luks2', 'cryptodisk'].includes(a)) ??
    (['btrfs', 'zfs'].includes(f.grubenvFs) ? f.grubenvFs : undefined)
  if (unwritable !== undefined) {
    return { ok: false, reason: `host ${host} keeps /boot/grub/grubenv on ${unwritable}, where GRUB cannot write its environment block at boot: a one-shot entry would never be cleared, so Xen would become the default with no fallback; move /boot to a plain partition (ext4 / xfs / vfat) first` }
  }
  const warnings: string[] = []
  if (f.grubenvFs === '') warnings.push('could not check with grub-probe that GRUB can write grubenv at boot (LVM, RAID, btrfs and ZFS cannot)')
  if (vm) warnings.push(`${who}: Xen runs as a nested hypervisor on ${f.virt}; guests are slower than on bare metal, and most clouds support only KVM as the nested hypervisor`)
  if (isEc2Metal(f)) warnings.push('EC2 *.metal instances take 5-20 minutes to reboot')
  if (f.dom0Kernels.length === 0) warnings.push(`no installed kernel has CONFIG_XEN_DOM0 (running ${f.kernelRelease}, e.g. Debian's cloud kernel): installing linux-image-amd64 for the dom0`)
  const packages = xenPackages(f)
  return { ok: true, action: 'boot-into-xen', packages, warnings, summary: `${who} with ${intel ? 'VT-x/EPT' : 'AMD-V/NPT'}, ${f.efi ? 'EFI' : 'BIOS'} boot through GRUB: installs ${packages.join(' ')} and tries Xen for one boot` }
}

// ---------------------------------------------------------------------------------------
// grub.cfg

export interface GrubMenuItem {
  kind: 'menuentry' | 'submenu'
  title: string
  id?: string
  classes: string[]
  /** Body lines of a menuentry (commands), [] for a submenu. */
  lines: string[]
  children: GrubMenuItem[]
}

/** Reads one shell word at s[i] (grub-mkconfig quotes with '…' and '\''), returns it and the next index. */
function shellWord (s: string, i: number): { word: string, next: number } {
  let word = ''
  while (i < s.length && !/\s/.test(s[i] ?? '')) {
    const c = s[i] ?? ''
    if (c === "'") {
      const end = s.indexOf("'", i + 1)
      if (end < 0) { word += s.slice(i + 1); return { word, next: s.length } }
      word += s.slice(i + 1, end)
      i = end + 1
    } else if (c === '"') {
      let j = i + 1
      while (j < s.length && s[j] !== '"') { if (s[j] === '\\') j++; word += s[j] ?? ''; j++ }
      i = j + 1
    } else if (c === '\\') {
      word += s[i + 1] ?? ''
      i += 2
    } else {
      word += c
      i++
    }
  }
  return { word, next: i }
}

function shellWords (s: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i] ?? '')) i++
    if (i >= s.length) break
    const w = shellWord(s, i)
    out.push(w.word)
    i = w.next
  }
  return out
}

/** The menu tree of a grub.cfg (menuentry / submenu blocks; everything else is ignored). */
export function parseGrubMenu (cfg: string): GrubMenuItem[] {
  const top: GrubMenuItem[] = []
  const stack: Array<{ item?: GrubMenuItem, children: GrubMenuItem[] }> = [{ children: top }]
  for (const raw of cfg.split('\n')) {
    const line = raw.trim()
    const head = /^(menuentry|submenu)\s+(.*)\{$/.exec(line)
    if (head !== null) {
      const w = shellWords(head[2] ?? '')
      const item: GrubMenuItem = { kind: head[1] as 'menuentry' | 'submenu', title: w[0] ?? '', classes: [], lines: [], children: [] }
      for (let i = 1; i < w.length; i++) {
        if (w[i] === '--class') item.classes.push(w[++i] ?? '')
        else if (w[i] === '--id' || w[i] === '$menuentry_id_option') item.id = w[++i]
      }
      stack[stack.length - 1]?.children.push(item)
      stack.push({ item, children: item.children })
      continue
    }
    if (line === '}') {
      if (stack.length > 1) stack.pop()
      continue
    }
    const cur = stack[stack.length - 1]?.item
    if (cur?.kind === 'menuentry' && line !== '') cur.lines.push(line)
  }
  return top
}

/** The `set default="…"` grub.cfg uses when no one-shot entry is set (00_header's else branch). */
export function grubDefaultSetting (cfg: string): string {
  for (const m of cfg.matchAll(/^\s*set default="([^"]*)"\s*$/gm)) {
    if (m[1] !== '${next_entry}') return m[1] ?? '0'
  }
  return '0'
}

export const SAVED_ENTRY = '${saved_entry}'

const kernelOf = (e: GrubMenuItem): string | undefined => {
  for (const l of e.lines) {
    const m = /^(?:linux|linuxefi|module2?)\s+(?:--\S+\s+)*\S*vmlinu[xz]-(\S+)/.exec(l)
    if (m !== null) return m[1]
  }
  return undefined
}
const xenImageOf = (e: GrubMenuItem): string | undefined => {
  for (const l of e.lines) {
    const m = /^multiboot2?\s+(?:--\S+\s+)*(\S+)/.exec(l)
    if (m !== null && /xen/i.test(m[1] ?? '')) return m[1]
  }
  return undefined
}

export const isXenEntry = (e: GrubMenuItem): boolean => e.kind === 'menuentry' && (e.classes.includes('xen') || xenImageOf(e) !== undefined)
export const isRecoveryEntry = (e: GrubMenuItem): boolean => /\(recovery mode\)|single-user/i.test(e.title) || /-recovery-/.test(e.id ?? '')

/** GRUB's escaping of '>' inside a path component. */
const escapeComponent = (s: string): string => s.replace(/>/g, '>>')

function splitRef (ref: string): string[] {
  const parts: string[] = []
  let cur = ''
  for (let i = 0; i < ref.length; i++) {
    const c = ref[i]
    if (c === '>' && ref[i + 1] === '>') { cur += '>'; i++ } else if (c === '>') { parts.push(cur); cur = '' } else cur += c ?? ''
  }
  parts.push(cur)
  return parts
}

/** Follows a GRUB entry reference ("2", "title", "id", "submenu>entry", "1>0") as GRUB does. */
export function resolveGrubRef (menu: GrubMenuItem[], ref: string): GrubMenuItem[] | undefined {
  let level = menu
  const path: GrubMenuItem[] = []
  for (const part of splitRef(ref)) {
    const item = /^\d+$/.test(part) ? level[Number(part)] : level.find(e => e.title === part || e.id === part)
    if (item === undefined) return undefined
    path.push(item)
    level = item.children
  }
  const last = path[path.length - 1]
  return last?.kind === 'menuentry' ? path : undefined
}

/**
 * The reference grub-reboot / grub-set-default get for a path: a submenu by its title (Debian
 * gives the Linux and the Xen "Advanced options" submenus the same id), an entry by its id when
 * that is unique among its siblings, else by its title.
 */
export function grubRef (menu: GrubMenuItem[], path: GrubMenuItem[]): string {
  let level = menu
  const parts: string[] = []
  for (const item of path) {
    const byId = item.kind === 'menuentry' && item.id !== undefined && level.filter(e => e.id === item.id).length === 1
    parts.push(escapeComponent(byId ? item.id ?? '' : item.title))
    level = item.children
  }
  return parts.join('>')
}

function walk (menu: GrubMenuItem[], visit: (path: GrubMenuItem[]) => boolean, prefix: GrubMenuItem[] = []): GrubMenuItem[] | undefined {
  for (const item of menu) {
    const path = [...prefix, item]
    if (item.kind === 'menuentry' && visit(path)) return path
    const found = walk(item.children, visit, path)
    if (found !== undefined) return found
  }
  return undefined
}

export interface GrubChoice {
  /** Reference for grub-reboot / grub-set-default / saved_entry. */
  ref: string
  /** Titles from the top, joined with " > " (for messages). */
  title: string
  kernel?: string
  note?: string
}

const choice = (menu: GrubMenuItem[], path: GrubMenuItem[], note?: string): GrubChoice => {
  const last = path[path.length - 1]
  const kernel = last !== undefined ? kernelOf(last) : undefined
  return { ref: grubRef(menu, path), title: path.map(p => p.title).join(' > '), ...(kernel !== undefined ? { kernel } : {}), ...(note !== undefined ? { note } : {}) }
}

/**
 * The entry to try Xen with: Debian's top-level "…, with Xen hypervisor" entry
 * (id xen-gnulinux-simple-<uuid>), else the first non-recovery Xen entry that loads a
 * multiboot image other than xen-*.efi (that one is a PE binary for chain-loading).
 */
export function findXenEntry (cfg: string): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const simple = menu.find(e => e.kind === 'menuentry' && /^xen-gnulinux-simple-/.test(e.id ?? '') && !isRecoveryEntry(e))
  if (simple !== undefined) return choice(menu, [simple])
  const path = walk(menu, p => {
    const e = p[p.length - 1]
    return e !== undefined && isXenEntry(e) && !isRecoveryEntry(e) && !/\.efi$/.test(xenImageOf(e) ?? '')
  })
  return path !== undefined ? choice(menu, path) : undefined
}

/** The entry GRUB boots by default now (grubenv: `grub-editenv list`, parsed). */
export function currentDefaultEntry (cfg: string, env: Record<string, string>): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const setting = grubDefaultSetting(cfg)
  const ref = setting === SAVED_ENTRY ? (env.saved_entry ?? '') : setting
  const path = resolveGrubRef(menu, ref === '' ? '0' : ref) ?? resolveGrubRef(menu, '0')
  return path !== undefined ? choice(menu, path) : undefined
}

/**
 * The entry the host falls back to (the saved default while Xen is on trial): the entry that
 * boots the running kernel (it demonstrably works), the default one if it does, and never a
 * Xen or recovery entry.
 */
export function fallbackEntry (cfg: string, env: Record<string, string>, runningKernel: string): GrubChoice | undefined {
  const menu = parseGrubMenu(cfg)
  const setting = grubDefaultSetting(cfg)
  const ref = setting === SAVED_ENTRY ? (env.saved_entry ?? '') : setting
  const def = resolveGrubRef(menu, ref === '' ? '0' : ref) ?? resolveGrubRef(menu, '0')
  const plain = (e: GrubMenuItem | undefined): boolean => e !== undefined && !isXenEntry(e) && !isRecoveryEntry(e) && kernelOf(e) !== undefined
  const last = def?.[def.length - 1]
  if (def !== undefined && plain(last) && last !== undefined && kernelOf(last) === runningKernel) return choice(menu, def)
  const running = walk(menu, p => { const e = p[p.length - 1]; return plain(e) && e !== undefined && kernelOf(e) === runningKernel })
  if (running !== undefined) {
    return choice(menu, running, def !== undefined && plain(last) ? undefined : `the default entry (${def?.map(p => p.title).join(' > ') ?? 'none'}) is not a plain Linux entry; falling back to the running kernel's entry`)
  }
  if (def !== undefined && plain(last)) return choice(menu, def, `no entry boots the running kernel ${runningKernel}; keeping the default entry`)
  const any = walk(menu, p => plain(p[p.length - 1]))
  return any !== undefined ? choice(menu, any, `no entry boots the running kernel ${runningKernel}; using the first Linux entry`) : undefined
}

// ---------------------------------------------------------------------------------------
// The plan and the return from the trial boot

export type XenBootStep = 'check' | 'prepare' | 'install' | 'regenerate' | 'arm' | 'reboot' | 'reconnect' | 'verify' | 'agent' | 'commit'

/** The steps, in order, with what each does (progress messages and docs). */
export const XEN_BOOT_STEPS: ReadonlyArray<{ step: XenBootStep, does: string }> = [
  { step: 'check', does: 'gather facts over SSH and decide whether Xen can run here' },
  { step: 'prepare', does: 'GRUB_DEFAULT=saved, Debian\'s Xen default override off, saved_entry = the running kernel\'s entry' },
  { step: 'install', does: 'apt-get install the Xen hypervisor and xl' },
  { step: 'regenerate', does: 'grub-mkconfig; find the Xen entry; check the default is still the saved entry' },
  { step: 'arm', does: 'grub-reboot <Xen entry> (next boot only) and enable the trial guard' },
  { step: 'reboot', does: 'reboot' },
  { step: 'reconnect', does: 'wait for SSH with a new boot id' },
  { step: 'verify', does: 'control_d in /proc/xen/capabilities and `xl info` works' },
  { step: 'agent', does: 'the caller starts the host agent and checks it answers' },
  { step: 'commit', does: 'grub-set-default <Xen entry>: Xen becomes the default' }
]

export function stepFraction (step: XenBootStep): number {
  const i = XEN_BOOT_STEPS.findIndex(s => s.step === step)
  return i < 0 ? 0 : i / XEN_BOOT_STEPS.length
}

/** What `xen-boot.sh status` reports, parsed. */
export interface XenBootStatus {
  bootId: string
  nextEntry: string
  savedEntry: string
  xenCaps?: string
  xlInfo: 'ok' | 'fail' | 'absent'
  xenVersion: string
  trial: boolean
  trialEntry: string
  armedBootId: string
  /** Boot id the guard recorded when it found itself under Xen during a trial. */
  xenBootId: string
  /** Last outcome written by the guard / commit / revert. */
  result: string
  guardEnabled: boolean
  xenBootErrors: string
}

export function parseBootStatus (text: string): XenBootStatus {
  const kv = parseKeyValues(text)
  const xl = kv.xl_info
  return {
    bootId: kv.boot_id ?? '',
    nextEntry: kv.next_entry ?? '',
    savedEntry: kv.saved_entry ?? '',
    xenCaps: kv.xen_caps === undefined || kv.xen_caps === 'absent' ? undefined : kv.xen_caps,
    xlInfo: xl === 'ok' || xl === 'fail' ? xl : 'absent',
    xenVersion: kv.xen_version ?? '',
    trial: kv.trial === 'yes',
    trialEntry: kv.trial_entry ?? '',
    armedBootId: kv.armed_boot_id ?? '',
    xenBootId: kv.xen_boot_id ?? '',
    result: kv.result ?? '',
    guardEnabled: kv.guard_enabled === 'yes',
    xenBootErrors: kv.xen_boot_errors ?? ''
  }
}

export type TrialOutcome =
  | { outcome: 'not-rebooted' }
  | { outcome: 'xen', xenVersion: string }
  | { outcome: 'xen-broken', reason: string }
  | { outcome: 'fallback', reason: string }

/**
 * What the host's state says about the trial boot. `armedBootId` is the boot id before the
 * reboot; `xenEntry` the one-shot entry.
 */
export function assessTrialBoot (s: XenBootStatus, armedBootId: string, xenEntry: string): TrialOutcome {
  if (s.bootId === '' || s.bootId === armedBootId) return { outcome: 'not-rebooted' }
  const dom0 = s.xenCaps !== undefined && /\bcontrol_d\b/.test(s.xenCaps)
  if (dom0 && s.xlInfo === 'ok') return { outcome: 'xen', xenVersion: s.xenVersion }
  if (dom0) {
    return { outcome: 'xen-broken', reason: `it came up under Xen but \`xl info\` ${s.xlInfo === 'absent' ? 'is missing' : 'fails'} (is xenstored running? see \`systemctl status xen\`)` }
  }
  const parts = ['it booted its old kernel by itself (not under Xen)']
  if (s.nextEntry === xenEntry) {
    parts.push('and the one-shot entry is still set: GRUB did not read this grubenv at boot (another boot loader or another grub.cfg is in use)')
  } else if (s.xenBootId !== '' || /^guard:/.test(s.result)) {
    parts.push(`after a boot under Xen (boot ${s.xenBootId !== '' ? s.xenBootId : 'unknown'}) that was not confirmed in time; the trial guard rebooted it`)
    if (s.xenBootErrors !== '') parts.push(`errors logged during that boot: ${s.xenBootErrors}`)
  } else {
    parts.push('and nothing was recorded from a boot under Xen: GRUB could not load Xen, or Xen or the dom0 kernel failed before systemd started (Xen reboots the machine after a dom0 crash); the serial console shows why (EC2: get-console-output)')
  }
  return { outcome: 'fallback', reason: parts.join(' ') }
}
