import t from 'tap'
import {
  handOverSwapTable, markArrival, repointEndpoints, Switchover, SWITCHOVER_HOOKS,
  type MigrationSwitchover, type SwitchoverHook
} from '../../../blanket-manager/migration/switchover.ts'
import type { EndpointWrite } from '../../../virtualwire/topology/compile.ts'

/** A promise with its resolve/reject in hand, to decide when a hook's work ends. */
function gate (): { p: Promise<void>, open: () => void, fail: (e: Error) => void } {
  let open = (): void => {}
  let fail = (_e: Error): void => {}
  const p = new Promise<void>((resolve, reject) => { open = resolve; fail = reject })
  return { p, open, fail }
}

interface Log { log: string[] }

/** A hook that logs its steps; `work` decides when atSwitchover ends. */
function hook (name: string, holds: boolean, opts: { applies?: boolean, work?: () => Promise<void>, rollback?: boolean, after?: boolean } = {}): SwitchoverHook<Log> {
  return {
    name,
    holds,
    applies: () => opts.applies ?? true,
    atSwitchover: async ctx => {
      ctx.log.push(`${name} start`)
      await (opts.work?.() ?? Promise.resolve())
      ctx.log.push(`${name} done`)
    },
    ...(opts.after === true ? { afterSwitch: async (ctx: Log, started: Promise<void>) => { await started.catch(() => {}); ctx.log.push(`${name} after`) } } : {}),
    ...(opts.rollback === true ? { onRollback: async (ctx: Log, started: Promise<void>) => { await started.catch(() => {}); ctx.log.push(`${name} rollback`) } } : {})
  }
}

t.test('the source holds only when a hook that applies holds', async t => {
  t.equal(new Switchover([hook('a', false), hook('b', true, { applies: false })], { log: [] }).holds, false)
  t.equal(new Switchover([hook('a', false), hook('b', true)], { log: [] }).holds, true)
  t.equal(new Switchover([], { log: [] }).holds, false)
  t.same(new Switchover([hook('a', false), hook('b', true, { applies: false }), hook('c', true)], { log: [] }).hooks.map(h => h.name), ['a', 'c'])
})

t.test('without a hold the switch counts as done at the event; hooks that do not hold run alongside', async t => {
  const ctx: Log = { log: [] }
  const g = gate()
  const sw = new Switchover([hook('wire', false, { work: async () => await g.p, after: true })], ctx)
  let released = false
  const work = sw.begin(async () => { released = true })
  t.equal(sw.switched, true, 'switched at once')
  t.same(ctx.log, ['wire start'], 'started synchronously at the event')
  await work
  t.equal(released, false, 'nothing to release: the source does not hold')
  const settled = sw.settle()
  g.open()
  await settled
  t.same(ctx.log, ['wire start', 'wire done', 'wire after'], 'settle waits for the hook that ran alongside')
})

t.test('a hold: hooks in list order, each that holds awaited, then the release', async t => {
  const ctx: Log = { log: [] }
  const g = gate()
  const sw = new Switchover([hook('wire', false, { work: async () => await g.p }), hook('mark', true), hook('swap', true)], ctx)
  const work = sw.begin(async () => { ctx.log.push('release') })
  t.equal(sw.switched, false, 'not before the release')
  t.same(ctx.log, ['wire start', 'mark start'], 'the re-point starts first and is not waited for')
  await work
  t.same(ctx.log, ['wire start', 'mark start', 'mark done', 'swap start', 'swap done', 'release'])
  t.equal(sw.switched, true)
  g.open()
  await sw.settle()
})

t.test('a failing hook that holds stops the switch; rollback runs for the started hooks only', async t => {
  const ctx: Log = { log: [] }
  const sw = new Switchover([
    hook('wire', false, { rollback: true }),
    hook('mark', true, { work: async () => { throw new Error('refused') }, rollback: true }),
    hook('swap', true, { rollback: true })
  ], ctx)
  let released = false
  await t.rejects(sw.begin(async () => { released = true }), /refused/)
  t.equal(released, false)
  t.equal(sw.switched, false)
  await t.rejects(sw.settle(), /refused/, 'settle reports it too')
  ctx.log.length = 0
  await sw.rollback()
  t.same(ctx.log, ['wire rollback', 'mark rollback'], 'swap never started')
})

t.test('a failing release leaves the switch undone', async t => {
  const sw = new Switchover([hook('mark', true)], { log: [] })
  await t.rejects(sw.begin(async () => { throw new Error('not held') }), /not held/)
  t.equal(sw.switched, false)
})

t.test('no event, no hook work: settle and rollback do nothing', async t => {
  const ctx: Log = { log: [] }
  const sw = new Switchover([hook('wire', false, { after: true, rollback: true })], ctx)
  await sw.settle()
  await sw.rollback()
  t.same(ctx.log, [])
})

const W = (host: string, file: EndpointWrite['file'], line: string): EndpointWrite => ({ host, file, line })

/** The controller's context with collaborators that record what they are asked. */
function migration (over: Partial<MigrationSwitchover> = {}): MigrationSwitchover & { said: string[], calls: string[] } {
  const said: string[] = []
  const calls: string[] = []
  return {
    vm: 'web',
    from: 'h1',
    to: 'h2',
    id: 'aaaaaaaaaaaa',
    say: m => { said.push(m) },
    source: {
      overdriverExportTable: async vm => { calls.push(`export ${vm}`); return { pages: [] } as never },
      overdriverHandover: async (vm, ok) => { calls.push(`handover ${vm} ${String(ok)}`) }
    },
    target: {
      markArrival: async (vm, id) => { calls.push(`mark ${vm} ${id}`); return { nodes: ['d0'] } },
      overdriverAdoptTable: async vm => { calls.push(`adopt ${vm}`); return { adopted: 3, repositories: 2, skipped: 0 } }
    },
    diskNodes: [],
    swap: false,
    outcome: { marked: false, repointFailed: false },
    ...over,
    said,
    calls
  }
}

t.test('the controller\'s hooks: re-point, disk mark, sector table, in that order', async t => {
  t.same(SWITCHOVER_HOOKS.map(h => h.name), ['virtualwire-repoint', 'disk-reuse-mark', 'overdriver-sector-table'])
  t.equal(repointEndpoints.holds, false, 're-pointed as QEMU switches, not during the hold')
  t.equal(markArrival.holds, true)
  t.equal(handOverSwapTable.holds, true)
  const wire = { repoint: [], undo: [], write: async () => {} }
  t.same(new Switchover(SWITCHOVER_HOOKS, migration()).hooks.map(h => h.name), [], 'no wires, disks or swap')
  const xen = new Switchover(SWITCHOVER_HOOKS, migration({ wire }))
  t.same(xen.hooks.map(h => h.name), ['virtualwire-repoint'], 'a wired Xen guest (no disks, no swap): re-point only')
  t.equal(xen.holds, false)
  const all = new Switchover(SWITCHOVER_HOOKS, migration({ wire, diskNodes: ['d0'], swap: true }))
  t.same(all.hooks.map(h => h.name), ['virtualwire-repoint', 'disk-reuse-mark', 'overdriver-sector-table'])
  t.equal(all.holds, true)
})

t.test('re-point: armed writes fire at the switch; a failure is retried once, then left for up', async t => {
  const writes: string[] = []
  const repoint = [W('h3', '1', 'a')]
  const undo = [W('h3', '1', 'b')]
  let refuse = 0
  const write = async (w: EndpointWrite[]): Promise<void> => { writes.push(w === repoint ? 'repoint' : w === undo ? 'undo' : '?'); if (refuse-- > 0) throw new Error('refused again') }
  const ctx = migration({
    wire: { repoint, undo, armed: { fire: async () => { writes.push('fire'); if (refuse-- > 0) throw new Error('refused') } }, write }
  })
  const sw = new Switchover(SWITCHOVER_HOOKS, ctx)
  await sw.begin(async () => { t.fail('no hold') })
  await sw.settle()
  t.same(writes, ['fire'])
  t.equal(ctx.outcome.repointFailed, false)

  writes.length = 0
  refuse = 1
  const retried = new Switchover(SWITCHOVER_HOOKS, ctx)
  await retried.begin(async () => {})
  await retried.settle()
  t.same(writes, ['fire', 'repoint'], 'retried the usual way')
  t.equal(ctx.outcome.repointFailed, false)

  writes.length = 0
  refuse = 2
  const failed = new Switchover(SWITCHOVER_HOOKS, ctx)
  await failed.begin(async () => {})
  await failed.settle()
  t.equal(ctx.outcome.repointFailed, true)
  t.same(ctx.said, ['re-pointing the sister endpoints failed (refused again): `supercloud up` re-applies the wires'])

  writes.length = 0
  refuse = 0
  const back = new Switchover(SWITCHOVER_HOOKS, migration({ wire: { repoint, undo, write }, diskNodes: ['d0'] }))
  await back.begin(async () => { throw new Error('QEMU gone') }).catch(() => {})
  t.equal(back.switched, false)
  await back.rollback()
  t.same(writes, ['repoint', 'undo'], 'unarmed: written the usual way, undone on rollback')
})

t.test('disk mark: marked on success; a refusal only costs a whole-disk copy on return', async t => {
  const ok = migration({ diskNodes: ['d0'] })
  const sw = new Switchover(SWITCHOVER_HOOKS, ok)
  const order: string[] = []
  await sw.begin(async () => { order.push(...ok.calls, 'continue') })
  t.same(order, ['mark web aaaaaaaaaaaa', 'continue'], 'marked before the switch is let go')
  t.equal(ok.outcome.marked, true)

  const no = migration({ diskNodes: ['d0'], target: { markArrival: async () => { throw new Error('no bitmap support') }, overdriverAdoptTable: async () => { throw new Error('unused') } } })
  const sw2 = new Switchover(SWITCHOVER_HOOKS, no)
  await sw2.begin(async () => {})
  t.equal(sw2.switched, true)
  t.equal(no.outcome.marked, false)
  t.same(no.said, ['h2 does not record disk writes (no bitmap support): a return will copy the whole disk'])
})

t.test('sector table: handed over, or left behind without failing the migration', async t => {
  const ok = migration({ swap: true })
  await new Switchover(SWITCHOVER_HOOKS, ok).begin(async () => {})
  t.same(ok.calls, ['export web', 'adopt web', 'handover web true'])
  t.same(ok.said, ['swap: 3 page(s) held in 2 repository capability(ies) move with the VM to h2'])

  const refused = migration({ swap: true })
  refused.target.overdriverAdoptTable = async () => { throw new Error('no repository') }
  const sw = new Switchover(SWITCHOVER_HOOKS, refused)
  await sw.begin(async () => {})
  t.equal(sw.switched, true)
  t.same(refused.calls, ['export web', 'handover web false'], 'the source keeps the table')
  t.same(refused.said, ['swap: the sector table stays behind (no repository): h2 reads the swap disk, h1 frees the repository pages'])

  const noExport = migration({ swap: true })
  noExport.source.overdriverExportTable = async () => { throw new Error('timeout') }
  await new Switchover(SWITCHOVER_HOOKS, noExport).begin(async () => {})
  t.same(noExport.calls, [], 'nothing exported: no handover to undo')
})
