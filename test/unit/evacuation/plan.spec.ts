/** The evacuation plan (blanket-manager/evacuation/plan.ts): targets, order, the deadline. */
import t from 'tap'
import { estimateMove, planEvacuation, describeEvacuation, type EvacuationInput } from '../../../blanket-manager/evacuation/plan.ts'

const M = 1024 * 1024
const MBps = 1_000_000
const now = Date.parse('2026-12-07T14:00:00Z')

function input (over: Partial<EvacuationInput>): EvacuationInput {
  return {
    source: { name: 'spot1', site: 'aws' },
    vms: [],
    targets: [],
    bandwidth: () => 10 * MBps,
    refuse: () => undefined,
    now,
    deadline: now + 120_000,
    overheadMs: 2000,
    marginMs: 5000,
    ...over
  }
}

t.test('shortest first: the most VMs finish before the deadline, the others are said late up front', async t => {
  // 10 MB/s, 2 s each besides memory: 600M ~ 65 s, 300M ~ 33 s, 200M ~ 23 s, 100M ~ 12.5 s.
  const vms = [{ name: 'big', memoryBytes: 600 * M }, { name: 'mid', memoryBytes: 300 * M }, { name: 'small', memoryBytes: 200 * M }, { name: 'tiny', memoryBytes: 100 * M }]
  const p = planEvacuation(input({ vms, targets: [{ name: 'od1', site: 'aws', freeBytes: 4096 * M }] }))
  t.same(p.moves.map(m => m.vm), ['tiny', 'small', 'mid', 'big'], 'by estimated time, shortest first')
  t.same(p.moves.map(m => m.inTime), [true, true, true, false])
  t.same(p.late, ['big'], 'three of four make it; the one that cannot is named now')
  // Largest first (the bin-packing order) would finish only big (65 s) and mid (98 s) in 115 s.
  let end = now
  const inTimeLargestFirst = [600, 300, 200, 100].filter(mb => { end += 2000 + (mb * M / (10 * MBps)) * 1000; return end <= now + 115_000 }).length
  t.ok(inTimeLargestFirst < 3, `largest first finishes ${inTimeLargestFirst}`)
  t.ok(p.moves.every((m, i) => i === 0 || m.endsAt > (p.moves[i - 1]?.endsAt ?? 0)), 'one after another: each ends after the one before')
  t.match(describeEvacuation(p, now + 120_000).join('\n'), /big -> od1 .*AFTER THE DEADLINE[\s\S]*not expected to make it before 2026-12-07T14:02:00.000Z: big/)
})

t.test('measured bandwidth orders too: a slower link makes a small VM the longer move', async t => {
  const p = planEvacuation(input({
    vms: [{ name: 'a', memoryBytes: 100 * M }, { name: 'b', memoryBytes: 150 * M }],
    targets: [{ name: 'far', site: 'lab', freeBytes: 100 * M }, { name: 'near', site: 'aws', freeBytes: 150 * M }],
    bandwidth: tg => tg.site === 'aws' ? 50 * MBps : 2 * MBps
  }))
  t.same(p.moves.map(m => [m.vm, m.to]), [['b', 'near'], ['a', 'far']], 'b (bigger, fast link) before a (smaller, slow link)')
})

t.test('targets: room first, the source\'s site first, then the most free memory; biggest placed first', async t => {
  const p = planEvacuation(input({
    vms: [{ name: 'v1', memoryBytes: 96 * M }, { name: 'v2', memoryBytes: 200 * M }],
    targets: [
      { name: 'lab1', site: 'lab', freeBytes: 1024 * M },
      { name: 'aws2', site: 'aws', freeBytes: 220 * M },
      { name: 'aws3', site: 'aws', freeBytes: 120 * M },
      { name: 'spot1', site: 'aws', freeBytes: 4096 * M }
    ]
  }))
  const to = Object.fromEntries(p.moves.map(m => [m.vm, m.to]))
  t.same(to, { v2: 'aws2', v1: 'aws3' }, 'v2 takes the roomier host of the site; v1 fits the other; never the source; the other site only when needed')
  t.same(p.stranded, [])
})

t.test('no room, or refused by the extender rule: stranded with the reasons', async t => {
  const p = planEvacuation(input({
    vms: [{ name: 'web', memoryBytes: 128 * M }, { name: 'db', memoryBytes: 512 * M }],
    targets: [{ name: 'aws2', site: 'aws', freeBytes: 256 * M }, { name: 'lab1', site: 'lab', freeBytes: 1024 * M }],
    refuse: (vm, to) => vm === 'db' && to === 'lab1' ? 'wire db.eth0 would cross sites in clear' : undefined
  }))
  t.same(p.moves.map(m => [m.vm, m.to]), [['web', 'aws2']])
  t.equal(p.stranded.length, 1)
  t.match(p.stranded[0], { vm: 'db', reason: /needs 512M; aws2 has 256M free; lab1: wire db.eth0 would cross sites in clear/ })
  const none = planEvacuation(input({ vms: [{ name: 'web', memoryBytes: 128 * M }], targets: [] }))
  t.match(none.stranded, [{ vm: 'web', reason: /no other host/ }])
})

t.test('a guest dirtying faster than pre-copy can follow moves by post-copy', async t => {
  t.same(estimateMove({ name: 'a', memoryBytes: 100 * M }, 10 * MBps, 0).mode, 'auto')
  const busy = estimateMove({ name: 'b', memoryBytes: 100 * M, dirtyBytesPerSec: 8 * MBps }, 10 * MBps, 1000)
  t.same(busy.mode, 'postcopy')
  t.equal(Math.round(busy.ms), 1000 + Math.round(100 * M / (10 * MBps) * 1000), 'post-copy sends each page once')
  const some = estimateMove({ name: 'c', memoryBytes: 100 * M, dirtyBytesPerSec: 2 * MBps }, 10 * MBps, 0)
  t.equal(Math.round(some.ms), Math.round(100 * M / (8 * MBps) * 1000), 'pre-copy resends what the guest dirties meanwhile')
  t.equal(estimateMove({ name: 'd', memoryBytes: M }, 0).ms, Number.POSITIVE_INFINITY, 'no link: never')
})
