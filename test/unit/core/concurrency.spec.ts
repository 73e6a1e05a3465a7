/** core/concurrency.ts: bounded fan-out keeps order, never exceeds its limit, and fails like Promise.all / allSettled. */
import t from 'tap'
import { concurrencyLimit, DEFAULT_HOST_CONCURRENCY, groupBy, mapLimited, repeatWithoutOverlap, settleLimited } from '../../../core/concurrency.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** An async function that records how many of its calls run at once. */
function gauged (): { fn: (x: number) => Promise<number>, max: () => number, started: number[] } {
  let now = 0
  let max = 0
  const started: number[] = []
  return {
    fn: async x => {
      started.push(x)
      now++
      max = Math.max(max, now)
      await sleep(1 + (x % 3))
      now--
      if (x < 0) throw new Error(`bad ${x}`)
      return x * 2
    },
    max: () => max,
    started
  }
}

t.test('mapLimited: results in order, at most `limit` calls at once', async t => {
  const g = gauged()
  const items = Array.from({ length: 25 }, (_, i) => i)
  t.same(await mapLimited(items, 4, g.fn), items.map(x => x * 2))
  t.equal(g.max(), 4)
  const one = gauged()
  await mapLimited(items, 1, one.fn)
  t.equal(one.max(), 1, 'limit 1 runs them one by one')
  t.same(one.started, items, 'in order')
  t.same(await mapLimited([], 4, g.fn), [], 'nothing to do')
})

t.test('mapLimited: the first failure rejects and nothing new starts after it', async t => {
  const g = gauged()
  const items = [0, 1, -1, 3, 4, 5, 6, 7, 8, 9]
  await t.rejects(mapLimited(items, 2, g.fn), /bad -1/)
  await sleep(20)
  t.ok(g.started.length < items.length, `only ${g.started.length} of ${items.length} started`)
})

t.test('settleLimited: every item is tried, outcomes in order', async t => {
  const g = gauged()
  const rs = await settleLimited([1, -2, 3, -4, 5], 2, g.fn)
  t.same(rs.map(r => r.status), ['fulfilled', 'rejected', 'fulfilled', 'rejected', 'fulfilled'])
  t.same(rs.map(r => r.status === 'fulfilled' ? r.value : (r.reason as Error).message), [2, 'bad -2', 6, 'bad -4', 10])
  t.equal(g.max(), 2)
})

t.test('concurrencyLimit: a positive integer, else the default', async t => {
  t.equal(concurrencyLimit('4'), 4)
  t.equal(concurrencyLimit(' 32 '), 32)
  for (const bad of [undefined, '', '0', '-3', '2.5', 'many']) t.equal(concurrencyLimit(bad), DEFAULT_HOST_CONCURRENCY, `${String(bad)} -> default`)
  t.equal(concurrencyLimit(undefined, 7), 7)
})

t.test('groupBy: groups in order of first appearance', async t => {
  t.same(groupBy(['a1', 'b1', 'a2', 'c1', 'b2'], s => s[0] ?? ''), [['a', ['a1', 'a2']], ['b', ['b1', 'b2']], ['c', ['c1']]])
})

t.test('odd limits: below one runs one at a time, Infinity runs all at once', async t => {
  const items = Array.from({ length: 6 }, (_, i) => i)
  const zero = gauged()
  t.same(await mapLimited(items, 0, zero.fn), items.map(x => x * 2))
  t.equal(zero.max(), 1)
  const all = gauged()
  await settleLimited(items, Infinity, all.fn)
  t.equal(all.max(), items.length)
})

t.test('repeatWithoutOverlap: a slow round is never overlapped by the next; stop ends it', async t => {
  let now = 0
  let max = 0
  let calls = 0
  const r = repeatWithoutOverlap(async () => { calls++; now++; max = Math.max(max, now); await sleep(25); now-- }, 5)
  await sleep(120)
  r.stop()
  const at = calls
  await sleep(40)
  t.equal(max, 1, 'never two rounds at once')
  t.ok(at >= 1 && at <= 6, `rounds spaced by the 25 ms call, not the 5 ms tick (${at} in 120 ms)`)
  t.equal(calls, at, 'no round after stop')
})
