import t from 'tap'
import { formatMigrationSummary } from '../../../blanket-manager/cli/migrate.ts'
import type { MigrateResult } from '../../../blanket-manager/controller/index.ts'

const MiB = 1024 * 1024
const base: MigrateResult = {
  from: 'h1', to: 'h2', mode: 'auto', postcopy: false, totalMs: 4210, downtimeMs: 87, sentBytes: 150 * MiB, iterations: 3,
  diskSentBytes: 0, diskSizeBytes: 0, diskReused: false
}

t.test('the summary names hosts, time, downtime, bytes and mode', async t => {
  t.equal(formatMigrationSummary('db1', base), 'migrated db1 from h1 to h2: total 4.21 s, downtime 87 ms, sent 150.0 MiB, mode auto, 3 precopy passes')
  t.match(formatMigrationSummary('db1', { ...base, postcopy: true }), /mode auto \(switched to postcopy\)/)
})

t.test('disks: how much of them was sent, and whether the image left there was reused', async t => {
  t.match(formatMigrationSummary('db1', { ...base, diskSentBytes: 64 * MiB, diskSizeBytes: 64 * MiB }), /, disks 64\.0 MiB of 64\.0 MiB$/)
  t.match(formatMigrationSummary('db1', { ...base, diskSentBytes: MiB, diskSizeBytes: 64 * MiB, diskReused: true }), /, disks 1\.0 MiB of 64\.0 MiB \(reused the image left there\)$/)
})
