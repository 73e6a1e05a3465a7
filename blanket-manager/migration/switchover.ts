/**
 * The tasks a live migration runs at its switchover, as one ordered list of hooks.
 *
 * The source agent reports `migration.switchover` when the guest stops on the source: for QEMU
 * both copies are paused with the disks in sync; for Xen (xl migrate) the guest has arrived
 * paused on the destination. A hook that `holds` makes the source wait there (the agent's
 * switchover hold) until it is done; one that does not is started and left running alongside
 * the switch, and is settled once the migration stream has finished. For Xen the only hook that
 * applies is the endpoint re-point (VMs with disks or a swap disk do not migrate between Xen
 * hosts: planner/placement.ts xenMigrationUnsupported): it starts at the switchover and is
 * settled before the controller's finishIncoming lets the guest run.
 *
 * A new task at the switchover is one more entry in SWITCHOVER_HOOKS. The runner (Switchover)
 * is pure: what a hook touches comes in through its context.
 */
import type { AgentClient } from '../agent/client.ts'
import type { EndpointWrite } from '../../virtualwire/topology/compile.ts'

/** One task at a migration's switchover. `C` is what the hooks are given (MigrationSwitchover in the controller). */
export interface SwitchoverHook<C> {
  /** For logs and tests. */
  readonly name: string
  /**
   * Whether the source waits at the switchover until this hook is done. A hook that does not
   * hold is started and left running; `afterSwitch` settles it.
   */
  readonly holds: boolean
  /** Whether this migration needs the hook; asked once, before the migration stream starts. */
  applies: (ctx: C) => boolean
  /**
   * At the switchover. The hooks start in list order; one that holds is awaited before the next
   * starts. A rejection of a hook that holds fails the migration before the switch.
   */
  atSwitchover: (ctx: C) => Promise<void>
  /** Once the migration stream finished (the switch happened); `started` is what atSwitchover returned. */
  afterSwitch?: (ctx: C, started: Promise<void>) => Promise<void>
  /** The migration failed before the switch: undo what atSwitchover did (`started` is what it returned). */
  onRollback?: (ctx: C, started: Promise<void>) => Promise<void>
}

/**
 * One migration's run of the hooks that apply to it. `holds` is for the source's
 * holdAtSwitchover; `begin` runs at the switchover event; then either `settle` (the stream
 * finished) or `rollback` (it failed and `switched` is false).
 */
export class Switchover<C> {
  /** The hooks that apply, in list order. */
  readonly hooks: ReadonlyArray<SwitchoverHook<C>>
  /** Whether the source must hold at the switchover (a hook that applies holds). */
  readonly holds: boolean
  /** The switch happened: the destination's copy is the VM from now on. */
  switched = false
  private readonly ctx: C
  private readonly started = new Map<SwitchoverHook<C>, Promise<void>>()
  private work: Promise<void> = Promise.resolve()

  constructor (hooks: ReadonlyArray<SwitchoverHook<C>>, ctx: C) {
    this.ctx = ctx
    this.hooks = hooks.filter(h => h.applies(ctx))
    this.holds = this.hooks.some(h => h.holds)
  }

  /**
   * At the switchover event: starts the hooks in list order (each one that holds is awaited
   * before the next), then, when the source holds, `release` lets the switch go. Without a hold
   * the switch is taken as done at once. The returned promise rejects when a hook that holds or
   * `release` failed (the caller then cancels the migration).
   */
  begin (release: () => Promise<void>): Promise<void> {
    this.work = (async () => {
      for (const h of this.hooks) {
        const p = start(h, this.ctx)
        this.started.set(h, p)
        if (h.holds) await p
        else p.catch(() => {})
      }
      if (this.holds) await release()
      this.switched = true
    })()
    return this.work
  }

  /** The migration stream finished: waits for the switchover's work, then each started hook's afterSwitch in list order. */
  async settle (): Promise<void> {
    await this.work
    for (const h of this.hooks) {
      const p = this.started.get(h)
      if (p !== undefined && h.afterSwitch !== undefined) await h.afterSwitch(this.ctx, p)
    }
  }

  /** The migration failed before the switch: each started hook's onRollback in list order (their failures are ignored). */
  async rollback (): Promise<void> {
    for (const h of this.hooks) {
      const p = this.started.get(h)
      if (p !== undefined && h.onRollback !== undefined) await h.onRollback(this.ctx, p).catch(() => {})
    }
  }
}

/** Calls atSwitchover now (up to its first await), a synchronous throw becoming a rejection. */
async function start<C> (h: SwitchoverHook<C>, ctx: C): Promise<void> {
  await h.atSwitchover(ctx)
}

/** What the controller's switchover hooks are given for one migration. */
export interface MigrationSwitchover {
  vm: string
  from: string
  to: string
  /** The migration's id: the destination's dirty bitmaps carry it. */
  id: string
  /** A progress line for the VM. */
  say: (message: string) => void
  source: Pick<AgentClient, 'overdriverExportTable' | 'overdriverHandover'>
  target: Pick<AgentClient, 'markArrival' | 'overdriverAdoptTable'>
  /** VirtualWire: absent when no wire touches the VM. */
  wire?: {
    /** The sister endpoints' re-points at `to`. */
    repoint: EndpointWrite[]
    /** Their inverse, for a switch that does not happen after all. */
    undo: EndpointWrite[]
    /** The re-points made ready ahead of the switch (see the controller's armEndpointWrites), when they could be. */
    armed?: { fire: () => Promise<void> }
    /** Writes endpoint lines the usual way (an SSH command per host). */
    write: (writes: EndpointWrite[]) => Promise<void>
  }
  /** Disk nodes on the destination that can record the guest's writes (dirty bitmaps) for a return. */
  diskNodes: readonly string[]
  /** Overdriver: the VM has a swap disk served by the agents (its sector table moves). */
  swap: boolean
  /** What the hooks did, read by the controller after the switch. */
  outcome: {
    /** The destination records the guest's disk writes under `id`: the source keeps its images. */
    marked: boolean
    /** The sister endpoints could not be re-pointed: the wires are left drifted for `up`. */
    repointFailed: boolean
  }
}

/**
 * VirtualWire: the sister endpoints are re-pointed at `to` as the switch happens, not during the
 * hold: frames sent to the destination before its guest runs wait in its TAP, frames sent to
 * the source while it is paused are lost either way, so the pause need not include the writes.
 * Retried once after the switch; if the sister hosts still refuse, the VM runs on `to` anyway
 * and the next `up` re-applies the wires (they show as drifted).
 */
export const repointEndpoints: SwitchoverHook<MigrationSwitchover> = {
  name: 'virtualwire-repoint',
  holds: false,
  applies: ctx => ctx.wire !== undefined,
  atSwitchover: async ctx => {
    const w = ctx.wire
    if (w === undefined) return
    await (w.armed !== undefined ? w.armed.fire() : w.write(w.repoint))
  },
  afterSwitch: async (ctx, started) => {
    const w = ctx.wire
    if (w === undefined) return
    const first = await started.then(() => undefined, (err: Error) => err)
    if (first === undefined) return
    const again = await w.write(w.repoint).then(() => undefined, (err: Error) => err)
    if (again === undefined) return
    ctx.outcome.repointFailed = true
    ctx.say(`re-pointing the sister endpoints failed (${again.message}): \`supercloud up\` re-applies the wires`)
  },
  onRollback: async (ctx, started) => {
    const w = ctx.wire
    if (w === undefined) return
    await started.catch(() => {})
    await w.write(w.undo).catch(() => {})
  }
}

/**
 * Disk reuse on return: the destination starts recording the guest's disk writes (dirty
 * bitmaps tagged with the migration id) while both copies are paused with the disks in sync,
 * before its copy runs. A refusal only costs the return a whole-disk copy.
 */
export const markArrival: SwitchoverHook<MigrationSwitchover> = {
  name: 'disk-reuse-mark',
  holds: true,
  applies: ctx => ctx.diskNodes.length > 0,
  atSwitchover: async ctx => {
    await ctx.target.markArrival(ctx.vm, ctx.id).then(() => { ctx.outcome.marked = true }, (err: Error) => {
      ctx.say(`${ctx.to} does not record disk writes (${err.message}): a return will copy the whole disk`)
    })
  }
}

/**
 * Overdriver: the sector table (which swap pages peer repositories hold, with the capabilities)
 * goes from the source's agent to the destination's while both copies are paused and the swap
 * disk is mirrored, so the destination serves those pages from the repositories. Any failure
 * skips it: the destination reads its (mirrored, complete) swap disk and the source frees the
 * repository pages when its copy is destroyed.
 */
export const handOverSwapTable: SwitchoverHook<MigrationSwitchover> = {
  name: 'overdriver-sector-table',
  holds: true,
  applies: ctx => ctx.swap,
  atSwitchover: async ctx => {
    const { vm, from, to, source, target, say } = ctx
    let exported = false
    try {
      const table = await source.overdriverExportTable(vm)
      exported = true
      const r = await target.overdriverAdoptTable(vm, table)
      await source.overdriverHandover(vm, true)
      say(`swap: ${r.adopted} page(s) held in ${r.repositories} repository capability(ies) move with the VM to ${to}${r.skipped > 0 ? ` (${r.skipped} skipped: read from disk)` : ''}`)
    } catch (err) {
      if (exported) await source.overdriverHandover(vm, false).catch(() => {})
      say(`swap: the sector table stays behind (${(err as Error).message}): ${to} reads the swap disk, ${from} frees the repository pages`)
    }
  }
}

/** The switchover tasks of a migration between hosts, in the order they run. */
export const SWITCHOVER_HOOKS: ReadonlyArray<SwitchoverHook<MigrationSwitchover>> = [repointEndpoints, markArrival, handOverSwapTable]
