/**
 * `supercloud events [--follow] [--json] [--since N] [--vm X] [--type T]`: the event history
 * of a supercloud and, with --follow, new events as they are stored.
 *
 * Reads the supercloud's state directly (no server needed): history from the `events` table,
 * and --follow polls it (EventHub.follow), so it sees what `supercloud up`, `supercloud serve`
 * and agents' pushes publish whether or not a server runs.
 */
import { Option, type Command } from 'commander'
import { SupercloudError } from '../../core/errors.ts'
import { EventHub, type EventFilter } from '../events/hub.ts'
import { formatEventLine } from '../events/format.ts'
import type { SupercloudEvent } from '../events/schema.ts'
import type { CliHelpers } from './serve.ts'

export interface EventsOptions {
  follow?: boolean
  json?: boolean
  since?: string
  vm?: string
  host?: string
  type: string[]
  limit: string
}

/** The filter the options describe; vm.stats is left out unless asked for. */
export function eventsFilter (o: Pick<EventsOptions, 'vm' | 'host' | 'type'>): EventFilter {
  const f: EventFilter = {}
  if (o.vm !== undefined) f.vm = o.vm
  if (o.host !== undefined) f.host = o.host
  const types = o.type.flatMap(t => t.split(',')).map(t => t.trim()).filter(t => t !== '')
  f.types = types.length > 0 ? types : ['!vm.stats']
  return f
}

function parseSince (s: string | undefined): number | undefined {
  if (s === undefined) return undefined
  const n = Number(s)
  if (!Number.isInteger(n) || n < 0) throw new SupercloudError('SC_USAGE', `--since ${s}: expected a sequence number (0 for all)`, { exitCode: 2 })
  return n
}

export function registerEvents (program: Command, helpers: CliHelpers): void {
  program.command('events')
    .description('show the event history (hosts, VMs, connectors, migrations, Overdriver); --follow for new ones')
    .option('--follow', 'keep printing new events as they happen (Ctrl-C stops)')
    .option('--json', 'one JSON event per line')
    .option('--since <seq>', 'events after this sequence number (default: the last --limit)')
    .option('--vm <name>', 'only events about this VM')
    .option('--host <name>', 'only events about this host')
    .addOption(new Option('--type <pattern>', 'only these types: vm.running, migration.*, !overload.* (repeatable; vm.stats is hidden unless named)').default([]).argParser((v: string, prev: string[]) => [...prev, v]))
    .addOption(new Option('--limit <n>', 'without --since: how many recent events to show').default('50'))
    .action(async (o: EventsOptions, cmd: Command) => {
      const since = parseSince(o.since)
      const limit = Number(o.limit)
      if (!Number.isInteger(limit) || limit < 0) throw new SupercloudError('SC_USAGE', '--limit must be a whole number', { exitCode: 2 })
      const filter = eventsFilter(o)
      const print = (ev: SupercloudEvent): void => {
        process.stdout.write((o.json === true ? JSON.stringify(ev) : formatEventLine(ev)) + '\n')
      }
      await helpers.withController(cmd, async c => {
        const hub = new EventHub(c.store)
        let cursor: number
        if (since !== undefined) {
          cursor = since
          for (;;) {
            const page = hub.list(cursor, filter, 1000)
            page.forEach(print)
            cursor = page[page.length - 1]?.seq ?? cursor
            if (page.length < 1000) break
          }
        } else {
          const all = hub.list(0, filter, Number.MAX_SAFE_INTEGER)
          all.slice(Math.max(0, all.length - limit)).forEach(print)
          // Following resumes after the last matching event shown (non-matching ones are skipped again).
          cursor = all[all.length - 1]?.seq ?? 0
        }
        if (o.follow !== true) return
        hub.follow()
        // The hub's poll timer does not hold the process; this does, until Ctrl-C.
        const keepAlive = setInterval(() => {}, 1 << 30)
        const sub = hub.subscribe({ ...filter, since: cursor, queueLimit: 100000 })
        const stop = (): void => { sub.close() }
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
        for await (const item of sub) {
          if (item.kind === 'event') print(item.event)
          else process.stderr.write(`events ${item.from}..${item.to} were pruned from the history\n`)
        }
        clearInterval(keepAlive)
        const r = sub.closeReason
        if (r?.kind === 'slow') throw r.error
        hub.close()
      }, false, () => {
        if (o.follow === true) throw new SupercloudError('SC_NOT_FOUND', 'this supercloud does not exist yet; run `supercloud up` first', { exitCode: 2 })
      })
    })
}
