import t from 'tap'
import { foldProgress, phaseOf, shouldStartPostcopy, capabilitiesFor, type MigrationProgress } from '../../../drivers/qemu/migration-progress.ts'

const M = 1048576

t.test('progress never runs backwards across dirty syncs', async t => {
  let p: MigrationProgress | undefined
  const fractions: number[] = []
  // disk phase, then RAM passes where `remaining` jumps up again after each sync
  p = foldProgress(p, { status: 'setup' }, 32 * M, 64 * M, 192 * M); fractions.push(p.fraction)
  p = foldProgress(p, { status: 'setup' }, 64 * M, 64 * M, 192 * M); fractions.push(p.fraction)
  p = foldProgress(p, { status: 'active', ram: { transferred: 100 * M, remaining: 92 * M, 'dirty-sync-count': 1 } }, 64 * M, 64 * M, 192 * M); fractions.push(p.fraction)
  p = foldProgress(p, { status: 'active', ram: { transferred: 120 * M, remaining: 150 * M, 'dirty-sync-count': 2 } }, 64 * M, 64 * M, 192 * M); fractions.push(p.fraction)
  p = foldProgress(p, { status: 'completed', ram: { transferred: 200 * M, remaining: 0 } }, 64 * M, 64 * M, 192 * M); fractions.push(p.fraction)
  t.ok(fractions[0]! < 0.2, `disk half done is a small part of the whole: ${fractions[0]}`)
  t.ok(fractions[1]! < 0.3, 'disk done but all RAM to go is not 100%')
  for (let i = 1; i < fractions.length; i++) t.ok(fractions[i]! >= fractions[i - 1]!, `monotonic at ${i}`)
  t.equal(fractions.at(-1), 1)
  t.equal(p.iteration, 2)
})

t.test('phases', async t => {
  t.equal(phaseOf('active'), 'memory')
  t.equal(phaseOf('pre-switchover'), 'switchover')
  t.equal(phaseOf('postcopy-active'), 'postcopy')
  t.equal(phaseOf('completed'), 'completed')
  t.equal(phaseOf('failed'), 'failed')
})

t.test('when to switch to postcopy', async t => {
  const mem = (iteration: number, remainingBytes: number): MigrationProgress => ({ phase: 'memory', sentBytes: 0, remainingBytes, dirtyRate: 0, iteration, fraction: 0 })
  const auto = { mode: 'auto' as const, deadlineMs: 60000, startedAt: 0 }
  t.notOk(shouldStartPostcopy({ ...auto, mode: 'precopy' }, 59000, mem(20, 100), []), 'precopy never')
  t.ok(shouldStartPostcopy({ ...auto, mode: 'postcopy' }, 10, mem(1, 100), []), 'postcopy after the first pass')
  t.notOk(shouldStartPostcopy({ ...auto, mode: 'postcopy' }, 10, mem(0, 100), []), 'not before it')
  t.notOk(shouldStartPostcopy(auto, 1000, mem(3, 100), []), 'auto: converging early on')
  t.ok(shouldStartPostcopy(auto, 31000, mem(3, 100), []), 'auto: past half the deadline')
  t.ok(shouldStartPostcopy(auto, 1000, mem(8, 100), [mem(7, 90)]), 'auto: 8 passes without shrinking')
  t.notOk(shouldStartPostcopy(auto, 1000, mem(8, 50), [mem(7, 90)]), 'auto: still shrinking')
  t.notOk(shouldStartPostcopy(auto, 31000, { ...mem(3, 100), phase: 'switchover' }, []), 'only during the memory phase')
})

t.test('capabilities per mode', async t => {
  const on = (m: Parameters<typeof capabilitiesFor>[0]): string[] => capabilitiesFor(m).filter(c => c.state).map(c => c.capability).sort()
  t.same(on('precopy'), ['auto-converge', 'events', 'pause-before-switchover'])
  t.same(on('auto'), ['events', 'pause-before-switchover', 'postcopy-ram'])
  t.notOk(capabilitiesFor('auto').some(c => c.capability === 'xbzrle'), 'XBZRLE is never offered')
})
