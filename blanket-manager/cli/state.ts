/**
 * `supercloud state show|push|pull`: where a supercloud's state lives, and moving it between
 * the local SQLite file and a shared PostgreSQL. Registered on the program by cli/main.ts.
 */
import type { Command } from 'commander'
import { SupercloudError } from '../../core/errors.ts'
import type { CliHelpers } from './serve.ts'

export function registerState (program: Command, helpers: CliHelpers): void {
  const state = program.command('state').description('where the supercloud\'s state lives, and moving it (SQLite file <-> shared PostgreSQL)')

  state.command('show')
    .description('print where the state lives: the SQLite file, or the PostgreSQL URL (no password) and schema')
    .action(async (_o: unknown, cmd: Command) => {
      await helpers.withController(cmd, async c => {
        const l = c.store.location()
        process.stdout.write(`${c.name}: ${l.kind === 'sqlite' ? 'SQLite file' : 'PostgreSQL'} ${l.where} (schema version ${l.schemaVersion})\nlocal files: ${c.dir}\n`)
      }, false, name => { process.stdout.write(`${name}: no state yet (\`supercloud up\` makes it)\n`) })
    })

  state.command('push <url>')
    .description('copy this supercloud\'s state into the PostgreSQL at <url> (refused if it already holds a supercloud of this name); then set `state: <url>` in the spec')
    .action(async (url: string, _o: unknown, cmd: Command) => {
      const { openStateStore } = await import('../state/store.ts')
      const { PgStateStore } = await import('../state/pg/store.ts')
      const { StateExistsError } = await import('../state/errors.ts')
      const { copyState } = await import('../state/copy.ts')
      await helpers.withController(cmd, async c => {
        if (PgStateStore.exists(c.name, url)) throw new StateExistsError(c.name, PgStateStore.displayUrl(url))
        const to = openStateStore(c.name, c.dir, url)
        try {
          const n = copyState(c.name, c.store, to)
          process.stderr.write(`state push: ${n.hosts} host(s), ${n.vms} VM(s), ${n.networks} network(s), ${n.hostKeys} host key(s) copied to ${to.path}\n` +
            `use it with \`state: ${PgStateStore.displayUrl(url)}\` in the spec (or SUPERCLOUD_STATE); the state at ${c.store.path} is left as it was\n`)
        } finally {
          to.close()
        }
      }, false)
    })

  state.command('pull')
    .description('copy this supercloud\'s state from its PostgreSQL into the local SQLite file (refused if that is not empty); then remove `state:` from the spec')
    .action(async (_o: unknown, cmd: Command) => {
      const { SqliteStateStore } = await import('../state/sqlite-store.ts')
      const { copyState } = await import('../state/copy.ts')
      await helpers.withController(cmd, async c => {
        if (c.store.location().kind !== 'postgres') throw new SupercloudError('SC_USAGE', `${c.name}'s state is already local (${c.store.path}); pull copies from PostgreSQL (state: in the spec, or SUPERCLOUD_STATE)`, { exitCode: 2 })
        const to = SqliteStateStore.open(c.dir)
        try {
          const n = copyState(c.name, c.store, to)
          process.stderr.write(`state pull: ${n.hosts} host(s), ${n.vms} VM(s), ${n.networks} network(s), ${n.hostKeys} host key(s) copied to ${to.path}\n` +
            `use it by removing \`state:\` from the spec (and SUPERCLOUD_STATE); the state at ${c.store.path} is left as it was\n`)
        } finally {
          to.close()
        }
      }, false)
    })
}
