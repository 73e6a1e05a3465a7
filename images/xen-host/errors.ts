import { SupercloudError } from '../../core/errors.ts'

/** Building the Xen host image failed (Xen or xen-utils not installed, missing library, I/O). */
export class XenImageBuildError extends SupercloudError {
  constructor (detail: string, cause?: unknown) {
    super('SC_XEN_IMAGE_BUILD', `Xen host image build failed: ${detail}`, { cause })
  }
}
