/** What serve does with a host's notices (blanket-manager/evacuation/notices.ts). */
import t from 'tap'
import { afterNotice, decideOnNotice, type HostNotice, type HostNoticeState } from '../../../blanket-manager/evacuation/notices.ts'

const T = '2026-12-07T14:02:00Z'
const rebalance: HostNotice = { kind: 'rebalance', noticeTime: '2026-12-07T14:00:00Z' }
const interruption: HostNotice = { kind: 'interruption', deadline: T }

/** Feeds notices in order, as serve does; the actions taken. */
function run (notices: HostNotice[], state: HostNoticeState = {}): { acts: string[], state: HostNoticeState } {
  const acts: string[] = []
  for (const n of notices) {
    const a = decideOnNotice('spot1', state, n)
    acts.push(a.act === 'ignore' ? 'ignore' : `${a.act}${'deadline' in a && a.deadline !== undefined ? ` ${new Date(a.deadline).toISOString()}` : ' unhurried'}`)
    state = afterNotice(state, n, a)
  }
  return { acts, state }
}

t.test('a rebalance recommendation starts an unhurried evacuation', async t => {
  const r = run([rebalance])
  t.same(r.acts, ['start unhurried'])
  t.same(r.state.running, {}, 'running, with no deadline')
  t.match(decideOnNotice('spot1', {}, rebalance).reason, /rebalance recommendation .*pre-copy, one at a time/)
})

t.test('an interruption notice after the recommendation hurries the running evacuation, it does not start a second one', async t => {
  const r = run([rebalance, interruption])
  t.same(r.acts, ['start unhurried', 'hurry 2026-12-07T14:02:00.000Z'])
  t.same(r.state.running, { deadline: Date.parse(T) })
})

t.test('an interruption notice alone starts an evacuation against its deadline', async t => {
  t.same(run([interruption]).acts, ['start 2026-12-07T14:02:00.000Z'])
})

t.test('the same notices again (a new agent connection replays them) do nothing', async t => {
  t.same(run([rebalance, interruption, rebalance, interruption]).acts, ['start unhurried', 'hurry 2026-12-07T14:02:00.000Z', 'ignore', 'ignore'])
})

t.test('a new recommendation while an evacuation runs, or after the interruption notice, does nothing', async t => {
  const later: HostNotice = { kind: 'rebalance', noticeTime: '2026-12-07T14:01:00Z' }
  t.same(run([rebalance, later]).acts, ['start unhurried', 'ignore'])
  const afterInterruption = run([interruption, later])
  t.same(afterInterruption.acts, ['start 2026-12-07T14:02:00.000Z', 'ignore'])
  // Its evacuation ended (serve clears `running`): still nothing, the host goes away anyway.
  t.same(run([later], { deadline: new Date(T).toISOString() }).acts, ['ignore'])
})

t.test('after an unhurried evacuation ended, the interruption notice starts one against its deadline', async t => {
  t.same(run([interruption], { rebalance: rebalance.noticeTime }).acts, ['start 2026-12-07T14:02:00.000Z'])
})

t.test('a second interruption time while the hurried evacuation runs moves its deadline', async t => {
  const sooner: HostNotice = { kind: 'interruption', deadline: '2026-12-07T14:01:30Z' }
  const r = run([interruption, sooner])
  t.same(r.acts, ['start 2026-12-07T14:02:00.000Z', 'hurry 2026-12-07T14:01:30.000Z'])
  t.same(run([{ kind: 'interruption', deadline: 'soon' }]).acts, ['ignore'], 'a notice without a valid time is not acted on')
})
