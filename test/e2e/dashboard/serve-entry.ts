/**
 * Until cli/main.ts registers `serve` and `events`, the dashboard e2e test runs them through
 * this entry (the same register functions, with a withController like main.ts's). Delete it
 * once main.ts has the two registration lines: the test then uses bin/supercloud.
 */
import { Command } from 'commander'
import { resolve } from 'node:path'
import { createController } from '../../../blanket-manager/controller/index.ts'
import { SupercloudError } from '../../../core/errors.ts'
import { registerEvents } from '../../../blanket-manager/cli/events.ts'
import { registerServe, type CliHelpers } from '../../../blanket-manager/cli/serve.ts'
import { loadSpec } from '../../../blanket-manager/specfile/load.ts'

const program = new Command().name('supercloud').option('-f, --file <path>', 'the supercloud spec', 'supercloud.yaml')
const helpers: CliHelpers = {
  withController: async (cmd, fn) => {
    const spec = await loadSpec(resolve((cmd.optsWithGlobals() as { file: string }).file))
    const c = createController(spec.name)
    try { return await fn(c, spec) } finally { c.close() }
  }
}
registerServe(program, helpers)
registerEvents(program, helpers)
try {
  await program.parseAsync(process.argv)
} catch (err) {
  process.stderr.write(err instanceof SupercloudError ? `error[${err.code}]: ${err.message}\n` : `error: ${(err as Error).stack}\n`)
  process.exit(1)
}
process.exit(process.exitCode ?? 0)
