/** The QEMU integration tests' guest: the tiny image booted by kernel and initrd under TCG, 256 MiB, one CPU. */
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { qemuKernel, type TinyImage } from '../../../images/guest/build.ts'

const MiB = 1024 * 1024

export function tinyGuestDefinition (img: TinyImage, name: string, runDir: string, over: Partial<GuestDefinition> = {}): GuestDefinition {
  return {
    name,
    cpus: 1,
    memoryBytes: 256 * MiB,
    accel: 'tcg',
    boot: { kind: 'kernel', kernel: qemuKernel(img), initrd: img.initrd, append: `console=ttyS0 sc.name=${name}` },
    disks: [],
    nics: [],
    runDir,
    ...over
  }
}
