import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { StateLockedError } from '../../../core/errors.ts'

t.test('records survive reopening the file', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const s = StateStore.open(dir)
  s.putHost({ name: 'h1', site: 'a', driver: 'local', specHash: 'x', status: 'creating', bootstrapped: false })
  s.putVm({ name: 'v1', host: 'h1', specHash: 'y', status: 'ready', record: { host: 'h1', nics: [], memory: { requestedBytes: 1, allocatedBytes: 1 }, cpus: 1, image: 'tiny' } })
  const prefix = s.prefix()
  s.close()
  const again = StateStore.open(dir)
  t.equal(again.host('h1')?.status, 'creating')
  t.equal(again.vm('v1')?.record?.image, 'tiny')
  t.equal(again.prefix(), prefix, 'prefix is chosen once')
  t.match(prefix, /^sc[0-9a-f]{4}$/)
  again.deleteHost('h1')
  t.equal(again.host('h1'), undefined)
  again.close()
})

t.test('prefix avoids ones already taken on the machine', async t => {
  const s = StateStore.open(mkdtempSync(join(tmpdir(), 'sc-state-')))
  let calls = 0
  const p = s.prefix(() => calls++ < 3)
  t.equal(calls, 4)
  t.match(p, /^sc/)
  s.close()
})

t.test('lock: a live holder refuses, a dead holder is taken over', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const a = StateStore.open(dir)
  a.lock()
  const b = StateStore.open(dir)
  // Simulate another live process holding the lock: our parent pid is alive and not us.
  writeFileSync(join(dir, 'lock'), String(process.ppid))
  t.throws(() => b.lock(), StateLockedError)
  // A pid that is certainly dead (a finished child).
  const dead = spawnSync('true').pid
  writeFileSync(join(dir, 'lock'), String(dead))
  t.doesNotThrow(() => b.lock())
  b.close()
  a.close()
})

t.test('journal is sequenced', async t => {
  const s = StateStore.open(mkdtempSync(join(tmpdir(), 'sc-state-')))
  const a = s.journal('host.ready', 'h1', { accel: 'tcg' })
  const b = s.journal('vm.running', 'v1')
  t.equal(b, a + 1)
  t.same(s.journalSince(a).map(e => e.kind), ['vm.running'])
  s.close()
})
