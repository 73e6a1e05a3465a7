/**
 * The shell fragment both images' /init source first (images/lib/init-common.sh: mounts,
 * module loading, the sc.* words, /etc, the status line). Each recipe reads it as an input,
 * hashes it into its image id and ships it at INIT_COMMON_PATH.
 */
import { projectPath } from '../../core/root.ts'
import type { CpioEntry } from '../guest/cpio.ts'
import type { BuildKit } from './build-kit.ts'

/** The fragment in this checkout. */
export const INIT_COMMON_SOURCE = projectPath('images', 'lib', 'init-common.sh')

/** Where it lands in the initramfs; images/guest/init.sh and images/xen-host/init.sh source this path. */
export const INIT_COMMON_PATH = '/lib/supercloud/init-common.sh'

/** Its key in a recipe's input digests (so the image id changes with the fragment). */
export const INIT_COMMON_DIGEST_KEY = 'init-common'

export async function readInitCommon (kit: Pick<BuildKit, 'readInput'>): Promise<Buffer> {
  return await kit.readInput(INIT_COMMON_SOURCE, 'shared init fragment')
}

/** The initramfs entry (sourced, not run: 0644). */
export function initCommonEntry (data: Buffer): CpioEntry {
  return { type: 'file', path: INIT_COMMON_PATH.slice(1), data, mode: 0o644 }
}
