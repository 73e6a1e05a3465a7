/**
 * `supercloud operations` lists running (and, with --all, recent) operations; `supercloud cancel
 * ID` asks a running one to stop, from any terminal that reaches the supercloud's state. The
 * operation notices within a fraction of a second, stops after its current steps, and its own
 * terminal exits with SC_CANCELLED (130); `events` shows operation.cancelled with who asked.
 */
import type { Command } from 'commander'
import { NotFoundError, SupercloudError } from '../../core/errors.ts'
import { isOperationId } from '../operations/operation.ts'
import type { OperationRow, StateStore } from '../state/store.ts'
import type { CliHelpers } from './serve.ts'
import { operatorName } from '../state/common.ts'

export { operatorName } from '../state/common.ts'

/**
 * Operations started on this machine whose process is gone (kill -9, a crash) are ended as failed,
 * so they do not show as running for ever. Those of other machines are left to their owners.
 */
export function reapOperations (store: Pick<StateStore, 'operations' | 'finishOperation'>, me = operatorName()): void {
  const machine = me.slice(me.indexOf('@'))
  for (const o of store.operations({ running: true, limit: 1000 })) {
    if (!o.who.endsWith(machine)) continue
    try { process.kill(o.pid, 0) } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') store.finishOperation(o.id, 'failed', new Date().toISOString())
    }
  }
}

export function formatOperation (o: OperationRow): string {
  const what = o.subject !== undefined ? `${o.kind} ${o.subject}` : o.kind
  const end = o.ended !== undefined ? `, ended ${o.ended}` : ''
  const cancel = o.cancelBy !== undefined && o.status === 'running' ? `, cancel asked by ${o.cancelBy}` : ''
  return `${o.id}  ${o.status.padEnd(9)}  ${what.padEnd(20)}  by ${o.who} (pid ${o.pid}) since ${o.started}${end}${cancel}`
}

export function registerOperations (program: Command, helpers: CliHelpers): void {
  program.command('operations')
    .description('long-running actions (up, down, migrate) that run now; --all for recent ones too')
    .option('--all', 'also the ended ones (newest first)')
    .option('--json', 'machine-readable output')
    .action(async (o: { all?: boolean, json?: boolean }, cmd: Command) => {
      await helpers.withController(cmd, async c => {
        reapOperations(c.store)
        const rows = c.store.operations({ running: o.all !== true })
        if (o.json === true) process.stdout.write(JSON.stringify(rows, null, 2) + '\n')
        else process.stdout.write(rows.length === 0 ? 'no operations running\n' : rows.map(formatOperation).join('\n') + '\n')
      }, false, () => { process.stdout.write(o.json === true ? '[]\n' : 'no operations running\n') })
    })

  program.command('cancel')
    .description('stop a running operation (an `up`, `down` or `migrate` started from any terminal)')
    .argument('<operation>', 'operation id, as `supercloud operations` and `events` show it')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      if (!isOperationId(id)) throw new SupercloudError('SC_USAGE', `'${id}' is not an operation id (8 hex digits, see \`supercloud operations\`)`, { exitCode: 2 })
      await helpers.withController(cmd, async c => {
        const row = c.store.operation(id)
        if (row === undefined) throw new NotFoundError('operation', id)
        if (row.status !== 'running' || !c.store.requestCancel(id, operatorName())) {
          throw new SupercloudError('SC_OPERATION_ENDED', `operation ${id} (${row.kind}) is not running: it ${row.status}${row.ended !== undefined ? ` at ${row.ended}` : ''}`, { exitCode: 2 })
        }
        process.stderr.write(`cancel: asked operation ${id} (${row.kind}, pid ${row.pid}) to stop; it stops after its current steps\n`)
      }, false)
    })
}
