/**
 * `up`'s confirmation of a plan that destroys data: asked y/N on a terminal; without one there
 * is no `confirm` and the controller refuses the plan (SC_PLAN_DESTROYS_DATA) unless `--yes`.
 * Also the parsing of `--replace vm/NAME`.
 */
import { createInterface } from 'node:readline/promises'
import { SupercloudError } from '../../core/errors.ts'

/** `vm/NAME` -> NAME (SC_USAGE for anything else). */
export function parseReplace (values: string[]): string[] {
  return values.map(v => {
    const m = /^vm\/([a-z][a-z0-9-]*)$/.exec(v)
    if (m?.[1] === undefined) throw new SupercloudError('SC_USAGE', `--replace ${v}: expected vm/NAME (only VMs can be replaced explicitly)`, { exitCode: 2 })
    return m[1]
  })
}

/** Asks on the terminal whether to go ahead; undefined when stdin or stderr is not a terminal (nobody to ask). */
export function terminalConfirm (input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): ((lost: string[]) => Promise<boolean>) | undefined {
  if (input.isTTY !== true || output.isTTY !== true) return undefined
  return async lost => {
    output.write(`\x1b[31mthis plan destroys data:\n${lost.map(l => `  - ${l}`).join('\n')}\x1b[0m\n`)
    const rl = createInterface({ input, output })
    try {
      const answer = await rl.question('apply it? [y/N] ')
      return /^y(es)?$/i.test(answer.trim())
    } finally {
      rl.close()
    }
  }
}
