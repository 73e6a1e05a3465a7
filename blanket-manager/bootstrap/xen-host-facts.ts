/**
 * Host bootstrap to Xen on a real server (issue #6), pure: the facts gathered over SSH by
 * drivers/host-bootstrap/xen-boot.sh `facts`, and whether Xen can run on such a host (with the
 * packages to install), or why not. The rules are documented in docs/xen-real-hosts.md.
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
