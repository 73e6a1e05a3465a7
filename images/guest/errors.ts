import { SupercloudError } from '../../core/errors.ts'

/** Building the tiny guest image failed (missing input, compiler error, I/O). */
export class ImageBuildError extends SupercloudError {
  constructor (detail: string, cause?: unknown) {
    super('SC_IMAGE_BUILD', `guest image build failed: ${detail}`, { cause })
  }
}

/** A value given to guestCmdline() cannot be put on a kernel command line. */
export class GuestCmdlineError extends SupercloudError {
  readonly field: string
  constructor (field: string, detail: string) {
    super('SC_GUEST_CMDLINE', `guest command line: ${field}: ${detail}`, { exitCode: 2 })
    this.field = field
  }
}
