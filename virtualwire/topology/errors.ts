import { SupercloudError } from '../../core/errors.ts'

/** A wire cannot be added or removed (`supercloud wire connect/disconnect`), or breaks the extender rule after placement. */
export class WireError extends SupercloudError {
  /** One line per problem, in the words of the spec validation. */
  readonly problems: string[]
  constructor (problems: string[]) {
    super('SC_WIRE_INVALID', problems.join('\n'), { exitCode: 2 })
    this.problems = problems
  }
}

/** The topology compiler was given inconsistent inputs (a wire without ID, a VM without host, a host without address). */
export class TopologyError extends SupercloudError {
  constructor (detail: string) {
    super('SC_TOPOLOGY', detail)
  }
}
