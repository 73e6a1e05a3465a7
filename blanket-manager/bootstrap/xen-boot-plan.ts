/**
 * Host bootstrap to Xen on a real server (issue #6), the pure plan: the steps, what
 * `xen-boot.sh status` reports, and what a host that came back after the trial reboot tells
 * us. Whether Xen can run is xen-host-facts.ts, the GRUB entries grub-menu.ts; the
 * orchestration is in xen-boot.ts.
 */
import { parseKeyValues } from './xen-host-facts.ts'

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
