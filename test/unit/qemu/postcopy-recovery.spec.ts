import t from 'tap'
import { backoffMs, decideRecovery, initialRecovery, type RecoveryAction, type RecoveryState } from '../../../drivers/qemu/postcopy-recovery.ts'

const policy = { boundMs: 60_000, stallMs: 4_000 }

/** Feeds samples [t ms, status, transferred] through the rule; returns the actions that were not 'none', with their times. */
function run (samples: Array<[number, string, number]>, from: RecoveryState = initialRecovery(0)): Array<[number, RecoveryAction]> {
  let s = from
  const out: Array<[number, RecoveryAction]> = []
  for (const [now, status, transferred] of samples) {
    const r = decideRecovery(s, { status, transferred, now }, policy)
    s = r.state
    if (r.action.kind !== 'none') out.push([now, r.action])
  }
  return out
}

t.test('a healthy postcopy stream is left alone', async t => {
  t.strictSame(run([[0, 'postcopy-active', 10], [1000, 'postcopy-active', 20], [5000, 'postcopy-active', 30], [9500, 'postcopy-active', 40]]), [])
})

t.test('no byte sent for stallMs in postcopy-active: pause once, then again only after another stallMs', async t => {
  const acts = run([[0, 'postcopy-active', 10], [3900, 'postcopy-active', 10], [4000, 'postcopy-active', 10], [4100, 'postcopy-active', 10], [8100, 'postcopy-active', 10]])
  t.strictSame(acts.map(([at, a]) => [at, a.kind]), [[4000, 'pause'], [8100, 'pause']])
  t.match(acts[0]?.[1], { reason: /no byte sent for 4 s/ })
})

t.test('paused: resume at once, then with a growing backoff while the path is down; resumed when bytes flow again', async t => {
  const samples: Array<[number, string, number]> = [[0, 'postcopy-paused', 10]]
  for (let ms = 100; ms <= 9000; ms += 100) samples.push([ms, 'postcopy-paused', 10])
  samples.push([9100, 'postcopy-recover', 10], [9200, 'postcopy-active', 50])
  const acts = run(samples)
  t.strictSame(acts.filter(([, a]) => a.kind === 'resume').map(([at]) => at), [0, 500, 1500, 3500, 7500], 'attempts at 0, +0.5, +1, +2, +4 s')
  t.strictSame(acts.at(-1), [9200, { kind: 'resumed', brokenMs: 9200, attempts: 5 }])
  t.strictSame([1, 2, 3, 4, 5, 9].map(backoffMs), [500, 1000, 2000, 4000, 5000, 5000], 'backoff capped at 5 s')
})

t.test('after a resume the stream starts over healthy: a later break is a new one', async t => {
  const acts = run([[0, 'postcopy-paused', 10], [100, 'postcopy-active', 20], [200, 'postcopy-active', 30], [4300, 'postcopy-active', 30]])
  t.strictSame(acts.map(([at, a]) => [at, a.kind]), [[0, 'resume'], [100, 'resumed'], [4300, 'pause']])
})

t.test('the byte QEMU writes as it pauses is no recovery', async t => {
  const acts = run([[0, 'postcopy-active', 10], [4000, 'postcopy-active', 10], [4100, 'postcopy-active', 14]])
  t.strictSame(acts.map(([, a]) => a.kind), ['pause'])
})

t.test('a new channel stuck in postcopy-recover is unstuck after stallMs', async t => {
  const acts = run([[0, 'postcopy-paused', 10], [100, 'postcopy-recover', 10], [3000, 'postcopy-recover', 10], [4100, 'postcopy-recover', 10]])
  t.strictSame(acts.map(([at, a]) => [at, a.kind]), [[0, 'resume'], [4100, 'unstick']])
})

t.test('broken for longer than the bound: give up, counting from the last byte sent', async t => {
  const samples: Array<[number, string, number]> = [[0, 'postcopy-active', 10], [4000, 'postcopy-active', 10]]
  for (let ms = 4100; ms <= 64_100; ms += 1000) samples.push([ms, 'postcopy-paused', 10])
  const acts = run(samples)
  const giveUp = acts.find(([, a]) => a.kind === 'give-up')
  t.equal(giveUp?.[0], 60_100, 'first sample past 60 s since the stream last moved')
  t.match(giveUp?.[1], { kind: 'give-up', brokenMs: 60_100 })
  t.ok(acts.filter(([, a]) => a.kind === 'resume').length >= 10, 'kept trying until then')
})

t.test('statuses outside postcopy are not this rule\'s business', async t => {
  t.strictSame(run([[0, 'active', 10], [10_000, 'active', 10], [20_000, 'pre-switchover', 10], [90_000, 'completed', 10]]), [])
})
