import t from 'tap'
import { chooseMigration, decide, DEFAULT_CONTROLLER_POLICY, emptyControllerState, type ControllerInput, type ControllerState, type HostView, type VmView } from '../../../overdriver/decision/decide.ts'
import type { OverdriverEvent } from '../../../overdriver/decision/events.ts'

const M = 1024 * 1024
const vms: VmView[] = [
  { name: 'web1', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M },
  { name: 'db1', host: 'h1', requestedBytes: 2048 * M, allocatedBytes: 2048 * M },
  { name: 'app1', host: 'h2', requestedBytes: 1024 * M, allocatedBytes: 512 * M }
]
const hosts: HostView[] = [
  { name: 'h1', migrationSpaceBytes: 0 },
  { name: 'h2', migrationSpaceBytes: 1024 * M },
  { name: 'h3', migrationSpaceBytes: 4096 * M }
]

/** Runs the controller over a series of web1 rates, one per 10 s interval. */
function run (rates: number[], opts: { state?: ControllerState, input?: Partial<ControllerInput>, policy?: typeof DEFAULT_CONTROLLER_POLICY } = {}): { state: ControllerState, steps: Array<{ actions: string[], events: OverdriverEvent[] }> } {
  let state = opts.state ?? emptyControllerState()
  const steps: Array<{ actions: string[], events: OverdriverEvent[] }> = []
  rates.forEach((r, i) => {
    const d = decide(state, { atMs: (i + 1) * 10_000, rates: { web1: r, db1: 0, app1: 0 }, vms, hosts, ...opts.input }, opts.policy)
    state = d.state
    steps.push({ actions: d.actions.map(a => a.kind === 'migrate' ? `migrate ${a.vm}->${a.target} for ${a.relieves}` : `${a.kind} ${a.vm}`), events: d.events })
  })
  return { state, steps }
}
const types = (e: OverdriverEvent[]): string[] => e.map(x => x.type === 'overload.classified' ? `classified.${x.class}` : x.type)

t.test('a transient overload: cooperative swap on at the first overloaded interval, off when it ends', async t => {
  const { steps } = run([10, 500, 800, 50, 0, 0, 0])
  t.same(steps[0]?.actions, [])
  t.same(steps[1]?.actions, ['coop-swap-on web1'])
  t.same(types(steps[1]?.events ?? []), ['overload.started', 'classified.transient', 'coopswap.on'])
  const started = steps[1]?.events[0]
  t.match(started, { type: 'overload.started', vm: 'web1', host: 'h1', atMs: 20_000, opsPerSec: 500 })
  t.same(steps[2]?.actions, [], 'nothing new while it lasts')
  t.same(steps[4]?.actions, [], 'two quiet intervals do not end it')
  t.same(steps[5]?.actions, ['coop-swap-off web1'])
  t.same(types(steps[5]?.events ?? []), ['overload.ended', 'coopswap.off'])
  t.match(steps[5]?.events[0], { type: 'overload.ended', class: 'transient', durationMs: 20_000 })
})

t.test('a sustained overload: swap first, then migration of the overloaded VM (no co-located VM is cheaper)', async t => {
  const { steps, state } = run(Array(10).fill(1000))
  t.same(steps[0]?.actions, ['coop-swap-on web1'])
  const at = steps.findIndex(s => s.actions.some(a => a.startsWith('migrate')))
  t.equal(at, 7, 'decided at the 8th overloaded interval (8 of 12)')
  t.same(steps[7]?.actions, ['migrate web1->h2 for web1'], 'best fit: h2 has exactly the 1024M web1 requested')
  t.same(types(steps[7]?.events ?? []), ['classified.sustained', 'migration.decided'])
  t.match(steps[7]?.events[0], { by: 'window', overloadedInWindow: 8 })
  t.match(steps[7]?.events[1], { move: 'web1', target: 'h2', relieves: 'web1', bytes: 512 * M })
  t.same(steps[8]?.actions, [], 'no second migration while the first is under way')
  t.same(state.vms.web1?.migrating, { move: 'web1', target: 'h2', sinceMs: 80_000 })
  t.equal(state.vms.web1?.coopSwap, true, 'cooperative swap stays on until the migration finishes')

  const after = decide(state, { atMs: 200_000, rates: { web1: 0 }, vms, hosts, migrated: ['web1'] })
  t.same(after.actions.map(a => a.kind), ['coop-swap-off'])
  t.equal(after.state.vms.web1?.migrating, undefined)
  t.equal(after.state.vms.web1?.window.intervals.length, 1, 'window restarted after migration')
})

t.test('migration of a co-located VM when it copies fewer bytes', async t => {
  const small: VmView[] = [
    { name: 'big', host: 'h1', requestedBytes: 4096 * M, allocatedBytes: 3072 * M },
    { name: 'tiny', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 1024 * M },
    { name: 'mid', host: 'h1', requestedBytes: 1536 * M, allocatedBytes: 1536 * M }
  ]
  const hs: HostView[] = [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 8192 * M }, { name: 'h3', migrationSpaceBytes: 1536 * M }]
  const c = chooseMigration(small[0] as VmView, small, hs)
  t.match(c, { move: 'tiny', target: 'h3', relieves: 'big', bytes: 1024 * M, growToBytes: 4096 * M }, 'tiny frees the 1G big needs and copies 1G instead of 3G; best fit h3')
  // With less need the co-located move still has to cover it.
  const c2 = chooseMigration({ ...small[0] as VmView, allocatedBytes: 2048 * M }, small, hs)
  t.match(c2, { move: 'big', target: 'h2' }, 'needs 2G: neither co-located VM frees that much, so big itself moves')
})

t.test('chooseMigration: ties move the overloaded VM; busy VMs are skipped; nothing fits → a reason', async t => {
  const v: VmView[] = [
    { name: 'a', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M },
    { name: 'b', host: 'h1', requestedBytes: 512 * M, allocatedBytes: 512 * M }
  ]
  t.match(chooseMigration(v[0] as VmView, v, [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 2048 * M }]), { move: 'a' })
  t.match(chooseMigration(v[0] as VmView, v, [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 600 * M }]), { move: 'b', target: 'h2' }, 'a does not fit h2, b does')
  const none = chooseMigration(v[0] as VmView, v, [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 600 * M }], new Set(['b']))
  t.type(none, 'string')
  t.match(none, /no host has 1073741824 bytes/)
  t.match(chooseMigration({ name: 'x', host: 'h1', requestedBytes: M, allocatedBytes: M }, v, []), /already has all the memory/)
})

t.test('chooseMigration: a host that refuses the VM (another site for a NIC on its site network) is not its target', async t => {
  const v: VmView[] = [
    { name: 'a', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M },
    { name: 'b', host: 'h1', requestedBytes: 512 * M, allocatedBytes: 512 * M }
  ]
  const why = "a's NIC eth0 is on the site network of s1, which does not reach far in site s2"
  // far fits best (least room) for a, but refuses it: a goes to near.
  const hs: HostView[] = [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'far', migrationSpaceBytes: 1024 * M, refuses: { a: why } }, { name: 'near', migrationSpaceBytes: 2048 * M }]
  t.match(chooseMigration(v[0] as VmView, v, hs), { move: 'a', target: 'near' })
  // Only far has room: the co-located b may go there (not refused), a may not.
  const only = [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'far', migrationSpaceBytes: 1024 * M, refuses: { a: why } }]
  t.match(chooseMigration(v[0] as VmView, v, only), { move: 'b', target: 'far', relieves: 'a' })
  const none = chooseMigration(v[0] as VmView, v, only, new Set(['b']))
  t.type(none, 'string')
  t.match(none, /not a target for a: far: a's NIC eth0 is on the site network of s1/, 'the reason names the refusal')
})

t.test('chooseMigration: best fit is the least room that suffices, then the first name, whatever the hosts\' order', async t => {
  const a: VmView = { name: 'a', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M }
  const hs: HostView[] = [
    { name: 'h1', migrationSpaceBytes: 0 },
    { name: 'hz', migrationSpaceBytes: 1024 * M },
    { name: 'big', migrationSpaceBytes: 8192 * M },
    { name: 'hb', migrationSpaceBytes: 1024 * M },
    { name: 'small', migrationSpaceBytes: 1000 * M },
    { name: 'ha', migrationSpaceBytes: 2048 * M }
  ]
  t.match(chooseMigration(a, [a], hs), { move: 'a', target: 'hb' }, 'hb and hz have just enough: hb by name; ha has more, small too little')
  t.match(chooseMigration(a, [a], [...hs].reverse()), { move: 'a', target: 'hb' }, 'the same in reverse order')
})

t.test('hosts whose VMs cannot live-migrate (Xen) are neither sources nor targets', async t => {
  const v: VmView[] = [
    { name: 'a', host: 'x1', requestedBytes: 1024 * M, allocatedBytes: 512 * M },
    { name: 'b', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M }
  ]
  const hs: HostView[] = [
    { name: 'x1', migrationSpaceBytes: 0, noMigration: 'Xen host' },
    { name: 'x2', migrationSpaceBytes: 4096 * M, noMigration: 'Xen host' },
    { name: 'h1', migrationSpaceBytes: 0 },
    { name: 'h2', migrationSpaceBytes: 2048 * M }
  ]
  t.match(chooseMigration(v[0] as VmView, v, hs), /VMs on x1 do not live-migrate \(Xen host\): a stays on cooperative swap/, 'a VM on a Xen host does not move')
  t.match(chooseMigration(v[1] as VmView, v, hs), { move: 'b', target: 'h2' }, 'x2 has the most room but takes no migration: best fit among the others')
  t.match(chooseMigration(v[1] as VmView, v, hs.filter(h => h.name !== 'h2')), /no host has/, 'only a Xen host has room: nothing fits')
  const { steps } = run(Array(12).fill(1000), { input: { hosts: [{ name: 'h1', migrationSpaceBytes: 0, noMigration: 'Xen host' }, { name: 'h2', migrationSpaceBytes: 4096 * M }] } })
  const blocked = steps.flatMap(s => s.events).filter(e => e.type === 'migration.blocked')
  t.equal(blocked.length, 1, 'the sustained overload on the Xen host is reported as blocked once')
  t.notOk(steps.some(s => s.actions.some(a => a.startsWith('migrate'))), 'and never migrated')
})

t.test('no migration possible: reported once per episode, coop swap stays on', async t => {
  const { steps } = run(Array(12).fill(1000), { input: { hosts: [{ name: 'h1', migrationSpaceBytes: 0 }] } })
  const blocked = steps.flatMap(s => s.events).filter(e => e.type === 'migration.blocked')
  t.equal(blocked.length, 1)
  t.notOk(steps.some(s => s.actions.some(a => a.startsWith('migrate'))))
})

t.test('a failed migration is decided again while the overload is still sustained', async t => {
  const first = run(Array(8).fill(1000))
  t.ok(first.state.vms.web1?.migrating)
  const d = decide(first.state, { atMs: 90_000, rates: { web1: 1000 }, vms, hosts, migrationFailed: ['web1'] })
  t.same(d.actions.map(a => a.kind), ['migrate'])
})

t.test('a VM allocated what it requested gets no cooperative swap and no migration', async t => {
  const d = run(Array(10).fill(0)).state
  let state = d
  const evs: OverdriverEvent[] = []
  const acts: string[] = []
  for (let i = 0; i < 10; i++) {
    const r = decide(state, { atMs: 200_000 + i * 10_000, rates: { db1: 5000 }, vms, hosts })
    state = r.state; evs.push(...r.events); acts.push(...r.actions.map(a => a.kind))
  }
  t.same(acts, [])
  t.match(evs.find(e => e.type === 'coopswap.unavailable'), { reason: /not oversubscribed/ })
  t.ok(evs.some(e => e.type === 'overload.classified' && e.class === 'sustained'), 'still classified, for the dashboard')
})

t.test('no repository room: overload reported, pages stay on the local disk', async t => {
  const { steps } = run([1000], { input: { repositoriesAvailable: false } })
  t.same(steps[0]?.actions, [])
  t.match(steps[0]?.events.find(e => e.type === 'coopswap.unavailable'), { reason: /no page repository has room/ })
  const per = run([1000], { input: { repositoriesAvailable: { web1: true } } })
  t.same(per.steps[0]?.actions, ['coop-swap-on web1'])
})

t.test('the profiler lowers the threshold from ended transients and the duration rule then fires early', async t => {
  const policy = { ...DEFAULT_CONTROLLER_POLICY, adaptive: { enabled: true, baseCount: 3 }, window: { size: 12, sustained: 12 } }
  // Three 20 s transients: mean 20 s, sigma 0 → threshold 20 s.
  const burst = [1000, 1000, 0, 0, 0]
  const r = run([...burst, ...burst, ...burst], { policy })
  const changes = r.steps.flatMap(s => s.events).filter(e => e.type === 'threshold.changed')
  t.equal(changes.length, 1)
  t.match(changes[0], { fromMs: 120_000, toMs: 20_000, samples: 3 })
  // A fourth overload lasting 30 s is now sustained (> 20 s) and migrates.
  const next = run([1000, 1000, 1000], { state: r.state, policy })
  t.match(next.steps[2]?.events.find(e => e.type === 'overload.classified' && e.class === 'sustained'), { by: 'duration', thresholdMs: 20_000 })
  t.ok(next.steps[2]?.actions.some(a => a.startsWith('migrate')))
  // Adaptive off: same history, no change.
  const off = run([...burst, ...burst, ...burst], { policy: { ...policy, adaptive: { enabled: false, baseCount: 3 } } })
  t.equal(off.steps.flatMap(s => s.events).filter(e => e.type === 'threshold.changed').length, 0)
})

t.test('decide does not modify its input state and skips VMs without a rate', async t => {
  const s0 = run([1000]).state
  const snapshot = JSON.stringify(s0)
  const d = decide(s0, { atMs: 20_000, rates: {}, vms, hosts })
  t.equal(JSON.stringify(s0), snapshot)
  t.same(d.actions, [])
  t.same(d.events, [])
  t.same(d.state.vms.web1?.window, s0.vms.web1?.window, 'no observation without a rate')
})

t.test('two VMs sustained in the same interval do not both take the same migration slot', async t => {
  const two: VmView[] = [
    { name: 'a', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M },
    { name: 'b', host: 'h1', requestedBytes: 1024 * M, allocatedBytes: 512 * M }
  ]
  const hs: HostView[] = [{ name: 'h1', migrationSpaceBytes: 0 }, { name: 'h2', migrationSpaceBytes: 1024 * M }]
  let state = emptyControllerState()
  const migrations: string[] = []
  const blocked: string[] = []
  for (let i = 0; i < 8; i++) {
    const d = decide(state, { atMs: (i + 1) * 10_000, rates: { a: 900, b: 900 }, vms: two, hosts: hs })
    state = d.state
    migrations.push(...d.actions.filter(a => a.kind === 'migrate').map(a => `${a.vm}->${a.target}`))
    blocked.push(...d.events.filter(e => e.type === 'migration.blocked').map(e => e.vm))
  }
  t.same(migrations, ['a->h2'], 'a moves to h2; that uses up h2, and a cannot be moved a second time for b')
  t.same(blocked, ['b'])
})
