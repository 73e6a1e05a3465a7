/**
 * The `supercloud` command line. Every command reads ./supercloud.yaml (or -f FILE) to
 * know which supercloud it acts on.
 */
import { Command, Option } from 'commander'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { knownHostsLine, sshArgs } from './ssh-args.ts'
import { withOwnKey } from '../access/own-key.ts'
import { supercloudKeyPath } from '../../drivers/local/keys.ts'
import { supercloudDir } from '../state/paths.ts'
import { stateUrl } from '../state/store.ts'
import type { LockWait } from '../state/wait.ts'
import type { Controller } from '../controller/index.ts'
import type { OperationContext, OperationRequest } from '../operations/operation.ts'
import { operatorName, reapOperations, registerOperations } from './operations.ts'
import { SupercloudError, SpecError } from '../../core/errors.ts'
import type { Spec } from '../../core/spec.ts'
import { makeProgressPrinter } from './progress.ts'
import { describePlan } from '../planner/changes.ts'
import { renderStatus } from './status.ts'
import { registerServe } from './serve.ts'
import { registerEvents } from './events.ts'
import { registerCost } from './cost.ts'
import { registerEvacuate } from './evacuate.ts'
import { registerState } from './state.ts'
import { registerAccess } from './access.ts'
import { makeMigrationBar, formatMigrationSummary } from './migrate.ts'
import { MIGRATION_MODES, type MigrationMode } from '../../drivers/qemu/migration-progress.ts'
import { parseBandwidth, parseDuration, parseSize } from '../../core/units.ts'

interface GlobalOpts { file: string }

function specPath (cmd: Command): string {
  return resolve((cmd.optsWithGlobals() as GlobalOpts).file)
}

async function withController<T> (cmd: Command, fn: (c: Controller, spec: Spec | undefined) => Promise<T>, needSpec = true, ifAbsent?: (name: string) => T): Promise<T> {
  const file = specPath(cmd)
  let spec: Spec | undefined
  let name: string
  try {
    const { loadSpec } = await import('../specfile/load.ts')
    spec = await loadSpec(file)
    name = spec.name
  } catch (err) {
    if (needSpec || !(err instanceof SpecError)) throw err
    name = basename(dirname(file)).toLowerCase().replace(/[^a-z0-9-]/g, '-')
  }
  const state = stateUrl(spec?.state)
  // Read-only commands on a supercloud that does not exist must not create its state.
  if (ifAbsent !== undefined && !await stateExists(name, state)) return ifAbsent(name)
  // Loaded here, not at start: `--help` and bad input need none of the controller.
  const { createController } = await import('../controller/index.ts')
  const c = createController(name, { onProgress: makeProgressPrinter(), ...(state !== undefined ? { state } : {}) })
  try {
    return await fn(c, spec)
  } finally {
    c.close()
  }
}

/** Whether supercloud `name` has state: its local directory, or its schema in the PostgreSQL at `url`. */
async function stateExists (name: string, url: string | undefined): Promise<boolean> {
  if (url === undefined) return existsSync(supercloudDir(name))
  const { PgStateStore } = await import('../state/pg/store.ts')
  return PgStateStore.exists(name, url)
}

/** How up, down and migrate wait for a lock another process holds: saying who, until it is free or Ctrl-C (`--no-wait`: refused at once). */
function lockWait (o: { wait?: boolean }, signal: AbortSignal): LockWait {
  return {
    wait: o.wait !== false,
    signal,
    onBlocked: err => { process.stderr.write(`${err.message.replace(/; wait for it.*$/, '')}; waiting… (Ctrl-C to stop)\n`) }
  }
}

/** An AbortSignal fired by the first Ctrl-C / SIGTERM; a second one exits at once. */
function interruptSignal (): AbortSignal {
  const ac = new AbortController()
  let count = 0
  const on = (): void => {
    count++
    if (count === 1) { process.stderr.write('\ninterrupted: stopping after the current steps (Ctrl-C again to exit now; `supercloud up` resumes)\n'); ac.abort() } else process.exit(130)
  }
  process.on('SIGINT', on)
  process.on('SIGTERM', on)
  return ac.signal
}

/** Runs a long action as an operation (blanket-manager/operations): recorded, in the event stream, cancellable by id. */
async function asOperation<T> (c: Controller, req: OperationRequest & { quiet?: boolean }, work: (op: OperationContext) => Promise<T>): Promise<T> {
  const hub = c.events
  reapOperations(c.store)
  const { runOperation } = await import('../operations/operation.ts')
  return await runOperation({ store: c.store, publish: ev => { hub.publish(ev) }, who: operatorName() }, {
    ...req,
    onStart: id => { if (req.quiet !== true) process.stderr.write(`operation ${id} (${req.kind}); \`supercloud cancel ${id}\` stops it from another terminal\n`) }
  }, work)
}

const program = new Command()
program
  .name('supercloud')
  .description('Run your own cloud on top of other clouds.')
  .option('-f, --file <path>', 'the supercloud spec', 'supercloud.yaml')
  .showHelpAfterError()
  .enablePositionalOptions()

const collect = (v: string, prev: string[]): string[] => [...prev, v]

program.command('up')
  .description('create or update everything the spec describes (idempotent; resumes an interrupted run); a plan that destroys data is confirmed y/N on a terminal, refused without one unless --yes')
  .option('-y, --yes', 'apply a plan that destroys data (replaced or deleted disks, a replaced host\'s VMs) without asking')
  .option('--replace <vm/NAME>', 'replace this VM (destroy and re-create it, losing its disks) though it could be kept; repeatable', collect, [])
  .option('--repair', 're-create hosts found unreachable (their guests\' data is lost); without it they are left alone')
  .option('--no-wait', 'when another command holds the lock, exit (SC_STATE_LOCKED) instead of waiting for it')
  .action(async (o: { yes?: boolean, replace: string[], repair?: boolean, wait?: boolean }, cmd: Command) => {
    await withController(cmd, async (c, spec) => {
      if (spec === undefined) return
      const t0 = Date.now()
      const { parseReplace, terminalConfirm } = await import('./confirm.ts')
      const replace = parseReplace(o.replace)
      const confirm = terminalConfirm()
      const r = await asOperation(c, { kind: 'up', signal: interruptSignal() }, async op => await c.up(spec, {
        signal: op.signal,
        lockWait: lockWait(o, op.signal),
        onProgress: op.onProgress,
        ...(o.yes === true ? { yes: true } : {}),
        ...(o.repair === true ? { repair: true } : {}),
        ...(replace.length > 0 ? { replace } : {}),
        ...(confirm !== undefined ? { confirm } : {}),
        onPlan: (_lines, p) => {
          const lines = describePlan(p, process.stderr.isTTY)
          process.stderr.write(lines.length === 0 ? 'plan: nothing to change\n' : `plan (${lines.length} change${lines.length === 1 ? '' : 's'}):\n${lines.map(l => `  ${l}`).join('\n')}\n`)
        }
      }))
      process.stderr.write(`up: ${r.applied} change${r.applied === 1 ? '' : 's'} applied in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
    })
  })

program.command('plan')
  .description('show what `up` would change (+ create, ~ update, > move, -/+ replace, - delete; DATA LOSS marked), without changing anything')
  .option('--json', 'machine-readable output')
  .option('--replace <vm/NAME>', 'plan the replacement of this VM (as `up --replace`); repeatable', collect, [])
  .option('--repair', 'plan the re-creation of unreachable hosts (as `up --repair`)')
  .action(async (o: { json?: boolean, replace: string[], repair?: boolean }, cmd: Command) => {
    await withController(cmd, async (c, spec) => {
      if (spec === undefined) return
      const p = await c.plan(spec, { ...(o.repair === true ? { repair: true } : {}), replace: (await import('./confirm.ts')).parseReplace(o.replace) })
      const { changesJson, dataLoss } = await import('../planner/changes.ts')
      if (o.json === true) process.stdout.write(JSON.stringify({ changes: changesJson(p.changes), destroysData: dataLoss(p.changes), actions: p.actions.map(a => ({ kind: a.kind, reason: a.reason })), held: p.held ?? [] }, null, 2) + '\n')
      else {
        const lines = describePlan(p, process.stdout.isTTY)
        process.stdout.write(lines.length === 0 ? 'nothing to change\n' : lines.join('\n') + '\n')
        if (spec.overdriver !== undefined) process.stdout.write((await import('./plan-capacity.ts')).formatCapacityPlan(spec))
      }
    })
  })

program.command('down')
  .description('remove everything `up` made, including the state')
  .option('--no-wait', 'when another command holds the lock, exit (SC_STATE_LOCKED) instead of waiting for it')
  .action(async (o: { wait?: boolean }, cmd: Command) => {
    await withController(cmd, async c => {
      await asOperation(c, { kind: 'down', signal: interruptSignal() }, async op => { await c.down({ signal: op.signal, onProgress: op.onProgress, lockWait: lockWait(o, op.signal) }) })
      process.stderr.write('down: everything removed\n')
    }, false)
  })

program.command('status')
  .description('hosts and guests, as recorded and as observed now')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }, cmd: Command) => {
    await withController(cmd, async c => {
      const s = await c.status()
      process.stdout.write(o.json === true ? JSON.stringify(s, null, 2) + '\n' : renderStatus(s))
    }, false, name => {
      const s = { name, stateFile: '', hosts: [], vms: [] }
      process.stdout.write(o.json === true ? JSON.stringify(s, null, 2) + '\n' : renderStatus(s))
    })
  })

program.command('console')
  .description("attach to a guest's serial console (Ctrl-] to leave)")
  .argument('<vm>', 'VM name')
  .addOption(new Option('--run <command>', 'run one shell command in the guest, print its output and exit with its status'))
  .addOption(new Option('--timeout <seconds>', 'with --run: how long to wait').default('60'))
  .action(async (vm: string, o: { run?: string, timeout: string }, cmd: Command) => {
    await withController(cmd, async c => {
      const stream = await c.openConsole(vm)
      if (o.run !== undefined) {
        const { runInConsole } = await import('./console.ts')
        const r = await runInConsole(stream, o.run, Number(o.timeout) * 1000)
        process.stdout.write(r.output)
        process.exitCode = r.status
      } else {
        const { runConsole } = await import('./console.ts')
        await runConsole(stream, vm)
      }
    }, false)
  })

program.command('ssh')
  .description('open a shell (or run a command) on a host')
  .argument('<host>', 'host name')
  .argument('[command...]', 'command to run instead of a shell')
  .passThroughOptions()
  .allowUnknownOption()
  .action(async (host: string, command: string[], _o: unknown, cmd: Command) => {
    const code = await withController(cmd, async c => {
      const r = c.hostRecord(host)
      // The controller's connection checks the host's key (and pins it at first contact); the
      // interactive ssh then accepts only that key.
      await c.connect(host)
      const pinned = c.store.hostKey(host)
      if (pinned === undefined) throw new Error(`host ${host}: no pinned host key after connecting`)
      const dir = join(c.dir, 'known_hosts.d')
      await mkdir(dir, { recursive: true, mode: 0o700 })
      const knownHosts = join(dir, host)
      await writeFile(knownHosts, knownHostsLine(host, pinned.publicKey), { mode: 0o600 })
      const args = sshArgs(host, withOwnKey(r.ssh, supercloudKeyPath(c.dir)), knownHosts, command, command.length === 0 && process.stdin.isTTY)
      return await new Promise<number>(resolve => {
        const child = spawn('ssh', args, { stdio: 'inherit' })
        child.on('exit', code => resolve(code ?? 1))
      })
    }, false)
    process.exitCode = code
  })

program.command('forget-host-key')
  .description("forget a host's pinned SSH host key (after it really changed): the next connection pins the key it meets")
  .argument('<host>', 'host name')
  .action(async (host: string, _o: unknown, cmd: Command) => {
    await withController(cmd, async c => {
      const was = c.store.hostKey(host)
      c.store.forgetHostKey(host)
      process.stdout.write(was !== undefined ? `forgot ${host}'s host key ${was.fingerprint} (pinned ${was.since})\n` : `no host key was pinned for ${host}\n`)
    }, false)
  })

program.command('resize')
  .description('change a running VM\'s vCPUs and memory live (hot-plug, no reboot) and record the new size (an `up` whose spec says the same changes nothing)')
  .argument('<vm>', 'VM name')
  .option('--cpus <n>', 'vCPUs (more than now: QEMU hot-plugs them)')
  .option('--memory <size>', 'memory, e.g. 512M (more than now, in 128M steps: QEMU hot-plugs a DIMM)')
  .action(async (vm: string, o: { cpus?: string, memory?: string }, cmd: Command) => {
    await withController(cmd, async (c, spec) => {
      if (spec === undefined) return
      const cpus = o.cpus !== undefined ? Number(o.cpus) : undefined
      if (cpus !== undefined && (!Number.isSafeInteger(cpus) || cpus < 1)) throw new SupercloudError('SC_USAGE', `--cpus must be a whole number >= 1, got '${o.cpus ?? ''}'`, { exitCode: 2 })
      const line = await c.resize(spec, vm, { ...(cpus !== undefined ? { cpus } : {}), ...(o.memory !== undefined ? { memoryBytes: parseSize(o.memory) } : {}) }, { signal: interruptSignal() })
      process.stdout.write(`${line}\n`)
    })
  })

program.command('migrate')
  .description('live-migrate a VM (memory and local disks) to another host')
  .argument('<vm>', 'VM name')
  .option('--to <host>', 'destination host')
  .addOption(new Option('--mode <mode>', 'auto: precopy, postcopy if it does not converge; precopy (with auto-converge); postcopy; hybrid').choices(MIGRATION_MODES).default('auto'))
  .option('--max-downtime <duration>', 'downtime QEMU aims for at the switch', '100ms')
  .option('--bandwidth <rate>', 'cap the migration stream, e.g. 200M (bits/s)')
  .option('--deadline <duration>', 'give up (VM stays on the source) if not done by then', '120s')
  .option('--cancel', 'cancel the running migration of <vm>')
  .option('--json', 'print the summary as JSON')
  .option('--no-wait', 'when an up or down holds the lock, exit (SC_STATE_LOCKED) instead of waiting for it')
  .action(async (vm: string, o: { to?: string, mode: MigrationMode, maxDowntime: string, bandwidth?: string, deadline: string, cancel?: boolean, json?: boolean, wait?: boolean }, cmd: Command) => {
    await withController(cmd, async (c, spec) => {
      if (spec === undefined) return
      if (o.cancel === true) {
        await c.cancelMigration(vm)
        process.stderr.write(`migrate: asked the source to cancel ${vm}'s migration\n`)
        return
      }
      if (o.to === undefined) throw new SupercloudError('SC_USAGE', 'migrate needs --to <host> (or --cancel)', { exitCode: 2 })
      const bar = makeMigrationBar(vm, o.to)
      const to = o.to
      const r = await asOperation(c, { kind: 'migrate', subject: vm, signal: interruptSignal(), quiet: true }, async op => await c.migrate(spec, vm, to, {
        mode: o.mode,
        maxDowntimeMs: parseDuration(o.maxDowntime),
        ...(o.bandwidth !== undefined ? { bandwidth: parseBandwidth(o.bandwidth) / 8 } : {}),
        deadlineMs: parseDuration(o.deadline),
        signal: op.signal,
        lockWait: lockWait(o, op.signal),
        onProgress: p => bar.update(p)
      }))
      bar.done()
      if (o.json === true) process.stdout.write(JSON.stringify(r, null, 2) + '\n')
      else process.stdout.write(formatMigrationSummary(vm, r) + '\n')
    })
  })

const wire = program.command('wire').description('VirtualWire: list, connect and disconnect wires at run time')

wire.command('list')
  .description('wires in force, their connector IDs and where their endpoints are')
  .option('--json', 'machine-readable output')
  .action(async (o: { json?: boolean }, cmd: Command) => {
    await withController(cmd, async (c, spec) => {
      if (spec === undefined) return
      const eff = c.effectiveSpec(spec)
      const prefix = c.store.prefix()
      const { resolveVms } = await import('../planner/placement.ts')
      const topo = c.topology(eff, resolveVms(eff, prefix), prefix)
      const rows = topo.connectors.map(k => ({
        id: k.id,
        wire: `${k.a.component}.${k.a.port} -- ${k.b.component}.${k.b.port}`,
        hosts: [k.a.host, k.b.host],
        mode: k.collapsed ? 'collapsed' : 'encapsulated'
      }))
      if (o.json === true) process.stdout.write(JSON.stringify(rows, null, 2) + '\n')
      else process.stdout.write(rows.length === 0 ? 'no wires\n' : rows.map(r => `${String(r.id).padStart(4)}  ${r.wire.padEnd(34)} ${r.hosts.join(' <-> ').padEnd(24)} ${r.mode}`).join('\n') + '\n')
    })
  })

for (const [verb, connect] of [['connect', true], ['disconnect', false]] as const) {
  wire.command(verb)
    .description(connect ? 'add a wire between two ports (e.g. web1.eth0 sw1.p4) and apply it' : 'remove a wire and apply it')
    .argument('<a>', 'component.port')
    .argument('<b>', 'component.port')
    .action(async (a: string, b: string, _o: unknown, cmd: Command) => {
      await withController(cmd, async (c, spec) => {
        if (spec === undefined) return
        const eff = c.effectiveSpec(spec)
        const { resolveVms } = await import('../planner/placement.ts')
        const { connectWire, disconnectWire } = await import('../../virtualwire/topology/compile.ts')
        const placement = Object.fromEntries(Object.values(resolveVms(eff, c.store.prefix())).map(r => [r.spec.name, r.host]))
        const next = connect ? connectWire(eff, c.wires(spec), a, b, placement) : disconnectWire(c.wires(spec), a, b)
        const changed = connect ? next[next.length - 1] : c.wires(spec).find(w => !next.includes(w))
        if (changed !== undefined) c.setWireChange(changed, connect)
        const r = await c.up(spec, { signal: interruptSignal() })
        process.stderr.write(`wire ${verb}: ${a} -- ${b} (${r.applied} change${r.applied === 1 ? '' : 's'} applied)\n`)
      })
    })
}

registerServe(program, { withController })
registerOperations(program, { withController })
registerEvents(program, { withController })
registerCost(program, { withController })
registerEvacuate(program, { withController, asOperation, interruptSignal })
registerState(program, { withController })
registerAccess(program, { withController })

async function main (): Promise<void> {
  try {
    await program.parseAsync(process.argv)
  } catch (err) {
    if (err instanceof SupercloudError) {
      process.stderr.write(`error[${err.code}]: ${err.message}\n`)
      process.exit(err.exitCode)
    }
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  }
  // Open handles (ssh keepalives) must not hold the process once the command finished.
  process.exit(process.exitCode ?? 0)
}

void main()
