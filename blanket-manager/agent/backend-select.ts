/**
 * Which hypervisor backend the host agent uses: Xen when this machine is a Xen dom0
 * (`xl info` answers), else QEMU. `--hypervisor qemu|xen` forces one.
 */
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import type { HypervisorBackend } from '../../drivers/hypervisor.ts'
import { createQemuBackend } from '../../drivers/qemu/backend.ts'
import { createXenBackend } from '../../drivers/xen/backend.ts'
import { xenInitrdConverter } from '../../drivers/xen/guest-initrd.ts'

export type HypervisorChoice = 'auto' | 'qemu' | 'xen'

/** True when `xl info` succeeds here (a dom0 with a running Xen). */
export async function xlWorks (xl = 'xl'): Promise<boolean> {
  return await new Promise(resolve => {
    execFile(xl, ['info'], { timeout: 30_000 }, err => { resolve(err === null) })
  })
}

export async function chooseBackend (opts: { dir: string, hypervisor?: HypervisorChoice, qemu?: string }): Promise<HypervisorBackend> {
  const want = opts.hypervisor ?? 'auto'
  if (want === 'xen' || (want === 'auto' && await xlWorks())) {
    return createXenBackend({ guestInitrd: xenInitrdConverter(join(opts.dir, 'xen-initrd')) })
  }
  return createQemuBackend(opts.qemu !== undefined ? { binary: opts.qemu } : {})
}
