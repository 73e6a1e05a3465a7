/**
 * decide() around a migration's life: a decided migration nobody carries out expires and is
 * decided again; a controller that reconfigures the loop forgets migrations it never started;
 * a VM that moves in is not judged on the move's I/O, and after it arrived its history starts
 * afresh behind a grace period (issue #8's benchmark findings).
 */
import t from 'tap'
import { DEFAULT_ARRIVAL_GRACE_INTERVALS, DEFAULT_MIGRATION_TIMEOUT_MS } from '../../../overdriver/constants.ts'
import { decide, DEFAULT_CONTROLLER_POLICY, emptyControllerState, forgetMigrations, type ControllerInput, type ControllerPolicy, type ControllerState, type HostView, type VmView } from '../../../overdriver/decision/decide.ts'
import type { OverdriverEvent } from '../../../overdriver/decision/events.ts'

const M = 1024 * 1024
const I = DEFAULT_CONTROLLER_POLICY.intervalMs
const web1: VmView = { name: 'web1', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M }
const hosts: HostView[] = [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 2048 * M }]

interface Run { state: ControllerState, at: number, decided: number[], events: OverdriverEvent[][] }

/** Feeds web1's rates one interval at a time from `from` (interval index); `extra` adds input per step index. */
function run (rates: number[], o: { state?: ControllerState, from?: number, vm?: VmView, policy?: ControllerPolicy, extra?: (i: number) => Partial<ControllerInput> } = {}): Run {
  let state = o.state ?? emptyControllerState()
  const decided: number[] = []
  const events: OverdriverEvent[][] = []
  let at = 0
  rates.forEach((r, i) => {
    at = ((o.from ?? 0) + i + 1) * I
    const d = decide(state, { atMs: at, rates: { web1: r }, vms: [o.vm ?? web1], hosts, ...o.extra?.(i) }, o.policy)
    state = d.state
    events.push(d.events)
    if (d.events.some(e => e.type === 'migration.decided')) decided.push(i)
  })
  return { state, at, decided, events }
}

t.test('a decided migration that is never reported expires after the timeout and is decided again', async t => {
  const policy: ControllerPolicy = { ...DEFAULT_CONTROLLER_POLICY, migrationTimeoutMs: 5 * I }
  const r = run(Array(20).fill(1000), { policy })
  t.equal(r.decided[0], 7, 'decided at the 8th overloaded interval')
  t.match(r.state.vms.web1?.migrating, { move: 'web1', target: 'h2' })
  // Decided at interval 8 (atMs 80 s): more than 5 intervals later (atMs 140 s) it expires.
  t.equal(r.decided[1], 13, 'decided again once the first one expired')
  const expired = r.events[13]?.find(e => e.type === 'migration.expired')
  t.match(expired, { type: 'migration.expired', vm: 'web1', move: 'web1', target: 'h2', sinceMs: 80_000 })
  t.same(r.events.slice(8, 13).flat().filter(e => e.type === 'migration.decided'), [], 'nothing decided while the first one may still be under way')
})

t.test('the default timeout is long enough for a slow migration, and a report before it ends the wait', async t => {
  t.ok(DEFAULT_MIGRATION_TIMEOUT_MS >= 300_000)
  const r = run(Array(40).fill(1000))
  t.same(r.decided, [7], 'one decision within the default timeout')
  const after = decide(r.state, { atMs: r.at + I, rates: { web1: 1000 }, vms: [web1], hosts, migrationFailed: ['web1'] })
  t.equal(after.events.filter(e => e.type === 'migration.decided').length, 1, 'a reported failure lets it decide again at once')
})

t.test('forgetMigrations: a reconfigured loop decides again for a VM still in a sustained overload', async t => {
  const r = run(Array(10).fill(1000))
  t.ok(r.state.vms.web1?.migrating !== undefined)
  const forgot = forgetMigrations(r.state)
  t.equal(forgot.vms.web1?.migrating, undefined)
  t.same(forgot.vms.web1?.window, r.state.vms.web1?.window, 'the window is kept')
  t.ok(r.state.vms.web1?.migrating !== undefined, 'the given state is not modified')
  const again = decide(forgot, { atMs: r.at + I, rates: { web1: 1000 }, vms: [web1], hosts })
  t.match(again.events.filter(e => e.type === 'migration.decided'), [{ move: 'web1', target: 'h2' }])
  t.same(forgetMigrations(emptyControllerState()), emptyControllerState())
})

t.test('while a VM moves in, its swap I/O is not judged and leaves no history', async t => {
  const arriving = { ...web1, host: 'h2', arriving: true }
  const r = run(Array(30).fill(5000), { vm: arriving })
  t.same(r.events.flat(), [], 'no event at all while arriving')
  t.same(r.state.vms.web1?.window.intervals, [], 'nothing recorded')
})

t.test('after arrival: no decision from intervals before or during the move, a grace period, then a fresh window', async t => {
  // On the source: sustained, migration decided, coop swap on.
  const src = run(Array(10).fill(1000))
  t.equal(src.state.vms.web1?.coopSwap, true)
  // On the destination the agent sees the VM still at its old allocation while it moves in, paging hard.
  const onH2 = { ...web1, host: 'h2' }
  const during = run(Array(12).fill(5000), { state: src.state, from: 10, vm: { ...onH2, arriving: true } })
  t.equal(during.state.vms.web1?.migrating, undefined, 'the source\'s decision does not travel')
  t.same(during.state.vms.web1?.window.intervals, [])
  // It arrived (reported, or its balloon deflated), still ballooned in this view, still paging hard.
  const grace = DEFAULT_ARRIVAL_GRACE_INTERVALS
  const after = run(Array(grace + 8).fill(5000), { state: during.state, from: 22, vm: onH2, extra: i => i === 0 ? { arrived: ['web1'] } : {} })
  t.same(after.events.slice(0, grace + 1).flat(), [], `the arrival interval and ${grace} grace intervals are not observed`)
  t.match(after.events[grace + 1], [{ type: 'overload.started' }], 'the first interval after the grace period starts a new episode')
  t.same(after.decided, [], 'no migration back to the source from the old history')
  const more = run([5000], { state: after.state, from: 22 + grace + 8, vm: onH2 })
  t.match(more.events[0], [{ type: 'overload.classified', class: 'sustained', overloadedInWindow: 8 }, { type: 'migration.blocked' }],
    'the 8th fresh overloaded interval makes it sustained (it really is overloaded here); h1 has no room, so it is blocked')
})

t.test('arrival turns cooperative swap off and ends the VM\'s own pending migration', async t => {
  const src = run(Array(10).fill(1000))
  const d = decide(src.state, { atMs: src.at + I, rates: { web1: 1000 }, vms: [web1], hosts, arrived: ['web1'] })
  t.same(d.actions, [{ kind: 'coop-swap-off', vm: 'web1', reason: 'arrived' }])
  t.equal(d.state.vms.web1?.migrating, undefined)
  t.equal(d.state.vms.web1?.graceUntilMs, src.at + I + DEFAULT_ARRIVAL_GRACE_INTERVALS * I)
  t.equal(d.state.vms.web1?.profiler.thresholdMs, DEFAULT_CONTROLLER_POLICY.initialThresholdMs)
})

t.test('a grace of 0 intervals observes right after arrival', async t => {
  const policy: ControllerPolicy = { ...DEFAULT_CONTROLLER_POLICY, arrivalGraceIntervals: 0 }
  const r = run([5000, 5000], { policy, extra: i => i === 0 ? { arrived: ['web1'] } : {} })
  t.same(r.events[0], [])
  t.match(r.events[1], [{ type: 'overload.started' }])
})
