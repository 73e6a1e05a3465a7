/**
 * `supercloud evacuate HOST`: live-migrates every VM of a host to other hosts (by hand, before
 * maintenance, or when its spot instance got a notice), as an operation (`supercloud cancel`
 * stops it; its progress is in the event stream). Registered on the program by cli/main.ts; the
 * work is evacuation/evacuate.ts.
 */
import type { Command } from 'commander'
import { SupercloudError } from '../../core/errors.ts'
import { parseBandwidth, parseDuration } from '../../core/units.ts'
import type { Controller } from '../controller/index.ts'
import type { OperationContext, OperationRequest } from '../operations/operation.ts'
import { makeProgressPrinter } from './progress.ts'
import type { CliHelpers } from './serve.ts'

export interface EvacuateHelpers extends CliHelpers {
  asOperation: <T>(c: Controller, req: OperationRequest, work: (op: OperationContext) => Promise<T>) => Promise<T>
  interruptSignal: () => AbortSignal
}

/** `--deadline`: an ISO time, or a duration from now (`90s`, `2m`). */
export function parseDeadline (text: string, now = Date.now()): number {
  if (/^\d{4}-\d{2}-\d{2}T/.test(text)) {
    const t = Date.parse(text)
    if (!Number.isNaN(t)) return t
  } else {
    try { return now + parseDuration(text) } catch { /* said below */ }
  }
  throw new SupercloudError('SC_USAGE', `--deadline ${text}: expected an ISO time (2026-01-02T03:04:05Z) or a duration from now (90s, 2m)`, { exitCode: 2 })
}

export function registerEvacuate (program: Command, helpers: EvacuateHelpers): void {
  program.command('evacuate')
    .description('live-migrate every VM of a host to other hosts (room by free memory, its site first, the extender rule kept), shortest first so the most finish before --deadline')
    .argument('<host>', 'the host to empty')
    .option('--deadline <time>', 'when the host goes away: ISO time or duration from now; VMs not expected to make it are said before it')
    .option('--bandwidth <rate>', 'bandwidth to assume until the first move measures it, e.g. 200M (bits/s)')
    .option('--json', 'print the result as JSON')
    .action(async (host: string, o: { deadline?: string, bandwidth?: string, json?: boolean }, cmd: Command) => {
      const deadline = o.deadline !== undefined ? parseDeadline(o.deadline) : undefined
      const bandwidth = o.bandwidth !== undefined ? parseBandwidth(o.bandwidth) / 8 : undefined
      await helpers.withController(cmd, async (c, spec) => {
        if (spec === undefined) return
        const { evacuateHost, EvacuationIncompleteError } = await import('../evacuation/evacuate.ts')
        try {
          const r = await helpers.asOperation(c, { kind: 'evacuate', subject: host, signal: helpers.interruptSignal(), onProgress: makeProgressPrinter() }, async op => await evacuateHost(c, spec, host, {
            ...(deadline !== undefined ? { deadline } : {}),
            ...(bandwidth !== undefined ? { bandwidth } : {}),
            signal: op.signal,
            onProgress: op.onProgress
          }))
          process.stdout.write(o.json === true ? JSON.stringify(r, null, 2) + '\n' : r.moved.map(m => `${m.vm} -> ${m.to}: ${(m.totalMs / 1000).toFixed(1)} s, downtime ${m.downtimeMs} ms${m.beforeDeadline ? '' : ' (after the deadline)'}\n`).join('') || `${host} has no VMs\n`)
        } catch (err) {
          if (o.json === true && err instanceof EvacuationIncompleteError) process.stdout.write(JSON.stringify(err.result, null, 2) + '\n')
          throw err
        }
      })
    })
}
