import { SupercloudError } from '../../core/errors.ts'

/** An extender (encrypted site-to-site tunnel) could not be planned, started, checked or routed. */
export class ExtenderError extends SupercloudError {
  /** The extender's name, when the failure concerns one. */
  readonly extender?: string
  constructor (extender: string | undefined, detail: string, cause?: unknown) {
    super('SC_EXTENDER', `extender${extender !== undefined ? ` ${extender}` : ''}: ${detail}`, { cause })
    if (extender !== undefined) this.extender = extender
  }
}
