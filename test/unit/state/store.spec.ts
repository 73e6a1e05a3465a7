import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { StateLockedError } from '../../../core/errors.ts'
import { holderText, parseHolder } from '../../../blanket-manager/state/lock.ts'

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

/** Runs lock-contender.ts processes racing from one moment; once each answered, winners may let go. Resolves with each one's output. */
async function contenders (dir: string, n: number, holdMs: number, mode = ''): Promise<string[]> {
  rmSync(join(dir, 'release'), { force: true })
  const goAt = Date.now() + 2500
  const script = join(import.meta.dirname, 'lock-contender.ts')
  let answered = 0
  const outs = await Promise.all(Array.from({ length: n }, async () => await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, dir, String(goAt), String(holdMs), mode], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      if (out === '' && ++answered === n) writeFileSync(join(dir, 'release'), '')
      out += d.toString()
    })
    child.on('error', reject)
    child.on('exit', () => { resolve(out.trim()) })
  })))
  return outs
}

t.test('lock: another process holding it refuses with its pid; released when it ends', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const s = StateStore.open(dir)
  t.teardown(() => { s.close() })
  // The holder takes the lock at once and keeps it until the release file exists: the check
  // below runs once it said so, however long its start took (no fixed sleep).
  rmSync(join(dir, 'release'), { force: true })
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'lock-contender.ts'), dir, '0', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>(resolve => { child.on('exit', () => { resolve() }) })
  const out = await new Promise<string>((resolve, reject) => {
    let text = ''
    child.stdout.on('data', (d: Buffer) => { text += d.toString(); if (text.includes('\n')) resolve(text.trim()) })
    child.on('error', reject)
    void exited.then(() => { resolve(text.trim()) })
  })
  t.match(out, /^got \d+$/, 'the other process holds the lock')
  const err = (() => { try { s.lock(); return undefined } catch (e) { return e } })()
  t.ok(err instanceof StateLockedError, 'refused while the other process holds it')
  t.match((err as Error | undefined)?.message, new RegExp(`locked by running process ${out.split(' ')[1] ?? 'x'} \\(${userInfo().username}@${hostname()} since \\d\\d:\\d\\d:\\d\\d, a command\\)`), 'names the holder: its pid, user@machine, since when, what for')
  writeFileSync(join(dir, 'release'), '')
  await exited
  t.doesNotThrow(() => { s.lock() }, 'free once the holder exited')
  s.unlock()
})

t.test('lock: a holder killed with SIGKILL leaves it free, and of processes racing for it exactly one wins', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const [died] = await contenders(dir, 1, 100, 'die')
  t.match(died, /^got \d+$/, 'the first holder took the lock, then was killed holding it')
  t.equal(readFileSync(join(dir, 'lock'), 'utf8').split('\n')[0], (died ?? '').split(' ')[1], 'its pid is still in the lock file: a stale lock')
  for (let round = 0; round < 3; round++) {
    const outs = await contenders(dir, 4, 200)
    const winners = outs.filter(o => o.startsWith('got '))
    t.equal(winners.length, 1, `round ${round + 1}: exactly one of 4 racing processes holds the lock (${outs.map(o => o.split(' ')[0]).join(', ')})`)
    t.equal(outs.filter(o => o.startsWith('locked ')).length, 3, 'the others are refused with StateLockedError')
  }
  const s = StateStore.open(dir)
  t.doesNotThrow(() => { s.lock() }, 'free after the last holder exited')
  s.close()
})

t.test('lock: re-entrant within one process; each lock needs its unlock', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const a = StateStore.open(dir)
  const b = StateStore.open(dir)
  a.lock()
  b.lock()
  a.unlock()
  const [still] = await contenders(dir, 1, 10)
  t.match(still, /^locked /, 'still held for b')
  b.unlock()
  const [free] = await contenders(dir, 1, 10)
  t.match(free, /^got /, 'free after both unlocked')
  a.close()
  b.close()
})

t.test('journal is sequenced', async t => {
  const s = StateStore.open(mkdtempSync(join(tmpdir(), 'sc-state-')))
  const a = s.journal('host.ready', 'h1', { accel: 'tcg' })
  const b = s.journal('vm.running', 'v1')
  t.equal(b, a + 1)
  t.same(s.journalSince(a).map(e => e.kind), ['vm.running'])
  s.close()
})

t.test('a version 1 state file is brought to the newest version at open, its rows kept: operators can be granted', async t => {
  const { default: Database } = await import('better-sqlite3')
  const { MIGRATIONS, SCHEMA_VERSION } = await import('../../../blanket-manager/state/migrations.ts')
  const dir = mkdtempSync(join(tmpdir(), 'sc-state-'))
  const db = new Database(join(dir, 'state.db'))
  db.exec(MIGRATIONS[0]?.sqlite ?? '')
  db.pragma('user_version = 1')
  db.prepare("INSERT INTO host_keys (host, fingerprint, public_key, pinned) VALUES ('h1', 'SHA256:aaa', 'ssh-ed25519 AAAA', 'then')").run()
  db.close()
  const s = StateStore.open(dir)
  t.teardown(() => { s.close() })
  t.equal(s.location().schemaVersion, SCHEMA_VERSION)
  t.equal(s.hostKey('h1')?.fingerprint, 'SHA256:aaa', 'the pinned key is kept')
  s.putOperator({ name: 'bob', publicKey: 'ssh-ed25519 BBBB', added: 'now', by: 'a@b' })
  t.strictSame(s.operators().map(o => o.name), ['bob'])
})

t.test('lock file: the holder\'s pid first (what older versions read), then who, since when, what for', async t => {
  const h = { pid: 4242, who: 'alice@laptop-7', since: '2026-12-08T02:10:11.000Z', purpose: 'migrate web1' }
  t.same(parseHolder(holderText(h)), h, 'read back as written')
  t.equal(holderText(h).split('\n')[0], '4242')
  t.same(parseHolder('4242\n'), { pid: 4242 }, 'a bare pid (an older holder) gives the pid alone')
  t.same(parseHolder('garbage'), { pid: -1 }, 'nothing readable: no pid')
  t.same(parseHolder(holderText({ pid: 1, purpose: 'up\nwho mallory' })), { pid: 1, purpose: 'up who mallory' }, 'a purpose cannot add a line')
})
