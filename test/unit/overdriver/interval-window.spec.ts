import t from 'tap'
import { classifyInterval, pagingRate } from '../../../overdriver/decision/interval.ts'
import { OverloadWindow } from '../../../overdriver/decision/window.ts'

t.test('classifyInterval: strictly above the threshold is overloaded', async t => {
  t.equal(classifyInterval(0), 'normal')
  t.equal(classifyInterval(200), 'normal', 'exactly 200 ops/s is not overload')
  t.equal(classifyInterval(200.01), 'overloaded')
  t.equal(classifyInterval(5000), 'overloaded')
  t.equal(classifyInterval(50, 40), 'overloaded', 'custom threshold')
  t.equal(classifyInterval(40, 40), 'normal')
  for (const bad of [-1, NaN, Infinity]) t.throws(() => classifyInterval(bad), RangeError, `rate ${bad}`)
  t.throws(() => classifyInterval(1, -5), RangeError)
})

t.test('pagingRate: reads + writes per second; counters that restart count from zero', async t => {
  t.equal(pagingRate({ atMs: 0, readPages: 0, writePages: 0 }, { atMs: 10_000, readPages: 1000, writePages: 1500 }), 250)
  t.equal(pagingRate({ atMs: 0, readPages: 5000, writePages: 5000 }, { atMs: 2000, readPages: 10, writePages: 30 }), 20, 'export restarted: new counters are the delta')
  t.throws(() => pagingRate({ atMs: 5, readPages: 0, writePages: 0 }, { atMs: 5, readPages: 0, writePages: 0 }), RangeError)
})

t.test('window: 8 of 12 overloaded intervals make an overload sustained', async t => {
  const w = new OverloadWindow()
  const th = 10_000_000 // duration rule out of the way
  let at = 0
  const step = (o: boolean): ReturnType<OverloadWindow['observe']> => w.observe(o, at += 10_000, th)
  const first = step(true)
  t.ok(first.started)
  t.equal(first.class, 'transient')
  t.equal(first.durationMs, 10_000, 'one interval of overload lasts 10 s')
  // Oscillate: overloaded, normal, overloaded, normal ... (never 3 quiet in a row)
  const seen: number[] = []
  for (let i = 0; i < 20; i++) {
    const s = step(i % 2 === 1)
    seen.push(s.overloadedInWindow)
    t.equal(s.class, 'transient', `alternating overload stays transient (interval ${i})`)
  }
  t.ok(Math.max(...seen) <= 7, 'alternating gives at most 7 of 12')
  // Now two overloaded for every normal one: reaches 8 of 12.
  let sustainedAt = -1
  for (let i = 0; i < 12 && sustainedAt < 0; i++) {
    const s = step(i % 3 !== 2)
    if (s.becameSustained) { sustainedAt = i; t.equal(s.overloadedInWindow, 8) }
  }
  t.ok(sustainedAt >= 0, 'became sustained')
  t.equal(w.sustainedBy, 'window')
  t.equal(step(true).becameSustained, false, 'becameSustained fires once')
})

t.test('window: continuous overload is sustained at the 8th interval (80 s) with the default threshold', async t => {
  const w = new OverloadWindow()
  let i = 0
  for (; i < 20; i++) {
    const s = w.observe(true, (i + 1) * 10_000, 120_000)
    if (s.becameSustained) break
  }
  t.equal(i + 1, 8)
  t.equal(w.sustainedBy, 'window')
})

t.test('window: the duration rule fires when an episode lasts longer than the threshold', async t => {
  const w = new OverloadWindow()
  // Threshold lowered to 30 s: 4 overloaded intervals (40 s) > 30 s.
  const results = [1, 2, 3, 4].map(i => w.observe(true, i * 10_000, 30_000))
  t.same(results.map(r => r.becameSustained), [false, false, false, true])
  t.equal(results[2]?.durationMs, 30_000, 'exactly the threshold is not longer than it')
  t.equal(w.sustainedBy, 'duration')
  // An oscillating overload also lasts: gaps count towards its duration.
  const o = new OverloadWindow()
  const pattern = [true, false, true, false, true, false, true]
  const r = pattern.map((x, i) => o.observe(x, (i + 1) * 10_000, 50_000))
  t.same(r.map(x => x.becameSustained), [false, false, false, false, false, false, true], '70 s from first to last overloaded interval > 50 s')
})

t.test('window: an episode ends after 3 quiet intervals and reports its duration', async t => {
  const w = new OverloadWindow()
  const at = (i: number): number => i * 10_000
  w.observe(true, at(1), 120_000)
  w.observe(true, at(2), 120_000)
  t.equal(w.observe(false, at(3), 120_000).ended, undefined)
  t.equal(w.observe(false, at(4), 120_000).ended, undefined)
  const end = w.observe(false, at(5), 120_000)
  t.same(end.ended, { durationMs: 20_000, class: 'transient', startMs: 0 })
  t.equal(end.class, undefined)
  t.equal(w.class, undefined)
  // An overloaded interval inside the quiet run keeps the episode open.
  w.observe(true, at(6), 120_000)
  w.observe(false, at(7), 120_000)
  w.observe(false, at(8), 120_000)
  const s = w.observe(true, at(9), 120_000)
  t.notOk(s.started, 'same episode')
  t.equal(s.durationMs, 40_000)
})

t.test('window: custom sizes, state round trip, reset and bad options', async t => {
  const w = new OverloadWindow({ size: 4, sustainedCount: 2, intervalMs: 1000, quietIntervals: 1 })
  w.observe(true, 1000, 60_000)
  const copy = new OverloadWindow({ size: 4, sustainedCount: 2, intervalMs: 1000, quietIntervals: 1 }, w.state())
  t.ok(copy.observe(true, 2000, 60_000).becameSustained, 'restored window remembers the first interval')
  t.same(copy.observe(false, 3000, 60_000).ended, { durationMs: 2000, class: 'sustained', startMs: 0 })
  t.equal(w.overloadedInWindow, 1, 'original untouched by the copy')
  w.reset()
  t.equal(w.overloadedInWindow, 0)
  t.throws(() => new OverloadWindow({ size: 4, sustainedCount: 5 }), RangeError)
  t.throws(() => new OverloadWindow({ size: 0 }), RangeError)
  t.throws(() => new OverloadWindow({ intervalMs: 0 }), RangeError)
  t.throws(() => w.observe(true, NaN, 1), RangeError)
  t.throws(() => w.observe(true, 1, 0), RangeError)
  // The window slides: only the last `size` intervals count.
  const s = new OverloadWindow({ size: 3, sustainedCount: 3, quietIntervals: 10 })
  s.observe(true, 10_000, 1e9); s.observe(true, 20_000, 1e9); s.observe(false, 30_000, 1e9)
  t.equal(s.observe(false, 40_000, 1e9).overloadedInWindow, 1)
})
