import t from 'tap'
import { Profiler } from '../../../overdriver/decision/profiler.ts'

t.test('threshold stays at 120 s until the base count of transients is reached', async t => {
  const p = new Profiler({ baseCount: 5 })
  t.equal(p.thresholdMs, 120_000)
  for (let i = 0; i < 4; i++) t.equal(p.recordTransient(30_000), undefined)
  t.equal(p.thresholdMs, 120_000)
  const change = p.recordTransient(30_000)
  t.same(change, { fromMs: 120_000, toMs: 30_000, samples: 5, meanMs: 30_000, sigmaMs: 0 }, 'all 30 s: mean + 3 sigma = 30 s')
  t.equal(p.thresholdMs, 30_000)
})

t.test('mean + 3 sigma of bucketed durations, adopted only when lower', async t => {
  const p = new Profiler({ baseCount: 4 })
  for (const d of [10_000, 20_000, 30_000]) p.recordTransient(d)
  const c = p.recordTransient(40_000)
  // mean 25 s, population sigma sqrt(125) s ≈ 11.18 s → 58.54 s
  t.ok(c !== undefined)
  t.equal(Math.round(c?.toMs ?? 0), Math.round(25_000 + 3 * Math.sqrt(125_000_000)))
  t.equal(c?.samples, 4)
  // A long transient raises mean + 3 sigma above the current threshold: not adopted.
  t.equal(p.recordTransient(110_000), undefined)
  t.equal(Math.round(p.thresholdMs), 58_541)
  t.same(p.profile(), [{ durationMs: 10_000, count: 1 }, { durationMs: 20_000, count: 1 }, { durationMs: 30_000, count: 1 }, { durationMs: 40_000, count: 1 }, { durationMs: 110_000, count: 1 }])
})

t.test('durations fall in interval buckets, rounded up; the threshold never drops below one interval', async t => {
  const p = new Profiler({ baseCount: 3 })
  p.recordTransient(0); p.recordTransient(1); p.recordTransient(10_000)
  t.same(p.profile(), [{ durationMs: 10_000, count: 3 }])
  t.equal(p.thresholdMs, 10_000)
  p.recordTransient(10_001)
  t.same(p.profile().map(b => b.durationMs), [10_000, 20_000])
})

t.test('adaptive off: counts but never changes the threshold', async t => {
  const p = new Profiler({ adaptive: false, baseCount: 1, initialThresholdMs: 150_000 })
  for (let i = 0; i < 50; i++) t.equal(p.recordTransient(10_000), undefined)
  t.equal(p.thresholdMs, 150_000)
  t.equal(p.samples, 50)
})

t.test('reset after migration; state round trip; bad input', async t => {
  const p = new Profiler({ baseCount: 1 })
  p.recordTransient(20_000)
  t.equal(p.thresholdMs, 20_000)
  const q = new Profiler({ baseCount: 1 }, p.state())
  t.equal(q.thresholdMs, 20_000)
  t.equal(q.samples, 1)
  p.reset()
  t.equal(p.thresholdMs, 120_000)
  t.equal(p.samples, 0)
  t.equal(q.samples, 1, 'copies are independent')
  t.same(p.stats(), { meanMs: 0, sigmaMs: 0, samples: 0 })
  t.throws(() => p.recordTransient(-1), RangeError)
  t.throws(() => p.recordTransient(NaN), RangeError)
  t.throws(() => new Profiler({ baseCount: 0 }), RangeError)
  t.throws(() => new Profiler({ initialThresholdMs: 0 }), RangeError)
})
