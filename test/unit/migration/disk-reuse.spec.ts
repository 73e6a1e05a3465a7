import t from 'tap'
import { decideReuse, formatDiskSummary, obsoleteAfter } from '../../../blanket-manager/migration/disk-reuse.ts'
import { bitmapName, MAX_EARLY_PASSES, PASS_CONVERGED_BYTES, shouldRunPass } from '../../../drivers/qemu/disk-bitmap.ts'
import { isMigrationId } from '../../../core/names.ts'

const MiB = 1048576

t.test('bitmap names carry the migration id; other ids are refused', async t => {
  t.equal(bitmapName('0123abcd'), 'sc-since-0123abcd')
  t.ok(isMigrationId('a1b2c3d4e5f6'))
  t.notOk(isMigrationId('../etc'))
  t.notOk(isMigrationId('ABC'))
  t.notOk(isMigrationId(42))
  t.throws(() => bitmapName('x y'), RangeError)
})

t.test('reuse only when returning to the host that kept the image and the bitmap is there', async t => {
  const prev = { host: 'h1', id: 'aaaaaaaaaaaa' }
  const dirty = { present: true, dirtyBytes: 5.2 * MiB, sizeBytes: 64 * MiB }
  t.same(decideReuse(undefined, 'h1', dirty), { reuse: false }, 'never left anywhere')
  t.same(decideReuse(prev, 'h2', dirty), { reuse: false }, 'going elsewhere (chain X -> Y -> Z)')
  const yes = decideReuse(prev, 'h1', dirty)
  t.equal(yes.reuse, true)
  t.equal(yes.reuse && yes.id, 'aaaaaaaaaaaa')
  t.equal(yes.message, 'reusing the disk left on h1: 5.2 MiB of 64.0 MiB dirty')
  const noBitmap = decideReuse(prev, 'h1', { present: false, dirtyBytes: 0, sizeBytes: 64 * MiB })
  t.equal(noBitmap.reuse, false, 'QEMU restarted: no bitmap')
  t.match(noBitmap.message, /cannot be reused.*whole disk/)
  t.equal(decideReuse(prev, 'h1', undefined).reuse, false, 'source could not be asked')
})

t.test('a kept image elsewhere is obsolete once the VM moved to another host', async t => {
  t.equal(obsoleteAfter(undefined, 'h2'), undefined)
  t.equal(obsoleteAfter({ host: 'h1', id: 'aaaaaaaa' }, 'h1'), undefined, 'consumed by the return itself')
  t.equal(obsoleteAfter({ host: 'h1', id: 'aaaaaaaa' }, 'h3'), 'h1')
})

t.test('incremental passes: a first pass, more while falling, drain during memory', async t => {
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: 0, passes: 0 }), false, 'nothing dirty')
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: 4096, passes: 0 }), true, 'first pass even when small')
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: PASS_CONVERGED_BYTES, passes: 1, previousDirtyBytes: 8 * MiB }), false, 'converged')
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: 4 * MiB, passes: 1, previousDirtyBytes: 8 * MiB }), true, 'falling')
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: 8 * MiB, passes: 2, previousDirtyBytes: 8 * MiB }), false, 'not falling: leave it to the memory phase')
  t.equal(shouldRunPass({ phase: 'disks', dirtyBytes: 4 * MiB, passes: MAX_EARLY_PASSES, previousDirtyBytes: 8 * MiB }), false, 'pass limit')
  t.equal(shouldRunPass({ phase: 'memory', dirtyBytes: 2 * MiB, passes: 9 }), true)
  t.equal(shouldRunPass({ phase: 'memory', dirtyBytes: 64 * 1024, passes: 3 }), false)
})

t.test('disk summary line', async t => {
  t.equal(formatDiskSummary({ diskSentBytes: 1.5 * MiB, diskSizeBytes: 64 * MiB, diskReused: true }, 'h2'), 'disks: reused the image left on the destination, sent 1.5 MiB of 64.0 MiB (2.3%)')
  t.equal(formatDiskSummary({ diskSentBytes: 64 * MiB, diskSizeBytes: 64 * MiB, diskReused: false }, 'h2'), 'disks: copied in full from h2, sent 64.0 MiB for 64.0 MiB')
  t.equal(formatDiskSummary({ diskSentBytes: 0, diskSizeBytes: 0, diskReused: false }, 'h2'), 'no disks')
})
