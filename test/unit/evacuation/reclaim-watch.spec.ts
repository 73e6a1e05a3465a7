/** serve's reclaim watch (blanket-manager/server/reclaim-watch.ts): the host is forgotten once its provider took it, not before its deadline. */
import t from 'tap'
import { watchReclaim, RECLAIM_GRACE_MS } from '../../../blanket-manager/server/reclaim-watch.ts'
import type { HostHealth } from '../../../drivers/cloud.ts'

const deadline = Date.parse('2026-12-07T14:02:00Z')

function deps (healthAt: (now: number) => HostHealth | undefined, clock: { now: number }): { calls: string[], forgotten: string[], d: Parameters<typeof watchReclaim>[0] } {
  const calls: string[] = []
  const forgotten: string[] = []
  return {
    calls,
    forgotten,
    d: {
      hostHealth: async h => { const x = healthAt(clock.now); calls.push(`${h} ${new Date(clock.now).toISOString()} ${x ?? 'none'}`); return x },
      forgetHost: (h, why) => { forgotten.push(`${h}: ${why}`); return 'deleted' },
      now: () => clock.now,
      sleep: async ms => { clock.now += ms }
    }
  }
}

t.test('looked at from the deadline on; forgotten once gone', async t => {
  const clock = { now: deadline - 60_000 }
  const x = deps(now => now < deadline + 5000 ? 'running' : 'gone', clock)
  const lines: string[] = []
  const r = await watchReclaim(x.d, 'aws2', deadline, new AbortController().signal, l => lines.push(l))
  t.equal(r, 'deleted')
  t.match(x.calls[0], /^aws2 2026-12-07T14:02:00.000Z running$/, 'first look at the deadline, not before')
  t.equal(x.forgotten.length, 1)
  t.match(x.forgotten[0], /^aws2: reclaimed by the provider at 2026-12-07T14:02:00.000Z/)
  t.match(lines, [/aws2 was reclaimed: removed from the state/])
})

t.test('a host still running long after its deadline is left alone; a host no longer in the state ends the watch', async t => {
  const clock = { now: deadline }
  const x = deps(() => 'running', clock)
  t.equal(await watchReclaim(x.d, 'aws2', deadline, new AbortController().signal, () => {}), undefined)
  t.ok(clock.now > deadline + RECLAIM_GRACE_MS - 5000)
  t.same(x.forgotten, [])
  const y = deps(() => undefined, { now: deadline })
  t.equal(await watchReclaim(y.d, 'aws2', deadline, new AbortController().signal, () => {}), undefined)
  t.equal(y.calls.length, 1)
})
