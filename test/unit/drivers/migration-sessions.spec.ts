import t from 'tap'
import { OutgoingSessions } from '../../../drivers/migration-sessions.ts'

t.test('a second migration of the same guest is refused while one runs; active tracks the session', async t => {
  const s = new OutgoingSessions()
  let finish = (): void => {}
  const first = s.run('vm1', undefined, async () => await new Promise<string>(resolve => { finish = () => resolve('done') }))
  t.equal(s.active('vm1'), true)
  t.equal(s.active('vm2'), false)
  await t.rejects(s.run('vm1', undefined, async () => 'again'), { code: 'SC_MIGRATION_IN_PROGRESS' })
  t.equal(s.active('vm1'), true, 'the refused call did not end the running one')
  finish()
  t.equal(await first, 'done')
  t.equal(s.active('vm1'), false, 'the session ends with its work')
  t.equal(await s.run('vm1', undefined, async () => 'next'), 'next', 'a new migration may start then')
})

t.test('cancel aborts the session signal; the caller\'s signal does too; cancel without a session is typed', async t => {
  const s = new OutgoingSessions()
  t.throws(() => { s.cancel('vm1') }, { code: 'SC_MIGRATION_NOT_RUNNING' })
  const seen = await s.run('vm1', undefined, async m => {
    s.cancel('vm1')
    return m.signal.aborted
  })
  t.equal(seen, true, 'cancel(name) aborts the running migration')
  const ac = new AbortController()
  const viaCaller = await s.run('vm1', ac.signal, async m => {
    ac.abort()
    return m.signal.aborted
  })
  t.equal(viaCaller, true, 'the caller\'s signal aborts it')
  const already = new AbortController()
  already.abort()
  t.equal(await s.run('vm1', already.signal, async m => m.signal.aborted), true, 'an already aborted signal counts')
})

t.test('the switchover holds until continue; continue outside a hold is typed', async t => {
  const s = new OutgoingSessions()
  const order: string[] = []
  const run = s.run('vm1', undefined, async m => {
    await m.switchover({ hold: true, onSwitchover: () => order.push('switchover') })
    order.push('released')
  })
  t.throws(() => { s.continue('vm2') }, { code: 'SC_MIGRATION_NOT_HELD' })
  await new Promise(resolve => setImmediate(resolve))
  t.same(order, ['switchover'], 'waits at the switchover')
  s.continue('vm1')
  await run
  t.same(order, ['switchover', 'released'])
  await s.run('vm1', undefined, async m => {
    t.throws(() => { s.continue('vm1') }, { code: 'SC_MIGRATION_NOT_HELD' }, 'not held before the switchover')
    await m.switchover({ hold: false, onSwitchover: () => order.push('no hold') })
  })
  t.same(order.at(-1), 'no hold', 'without hold it goes straight on')
})

t.test('a hold nobody releases fails the migration after the hold time', async t => {
  const s = new OutgoingSessions(50)
  await t.rejects(s.run('vm1', undefined, async m => { await m.switchover({ hold: true }) }), { code: 'SC_MIGRATION_FAILED' })
  t.equal(s.active('vm1'), false)
})
