/**
 * The state compliance suite: the behaviour every store (SQLite, PostgreSQL) must have, run by
 * store.spec.ts against each. `fresh()` gives a new, empty supercloud of the store (a name, its
 * local dir and the URL when the store is PostgreSQL); `open` opens one.
 */
import type { Test } from 'tap'
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { join } from 'node:path'
import { openStateStore, type StateStore } from '../../../blanket-manager/state/store.ts'
import { StateLockedError, VmMovingError } from '../../../core/errors.ts'
import { seekLeadership } from '../../../blanket-manager/server/leader.ts'

export interface Supercloud { name: string, dir: string, url?: string }

export interface StoreUnderTest {
  kind: 'sqlite' | 'postgres'
  fresh: () => Supercloud
}

export function open (sc: Supercloud): StateStore {
  return openStateStore(sc.name, sc.dir, sc.url)
}

/** Another process holding a lock of `sc` (contender.ts); resolves once it answered `got` or `locked`. */
export async function contender (sc: Supercloud, mode: 'lock' | 'move' | 'die' | 'event' | 'lead', vm = ''): Promise<{ line: string, child: ChildProcessByStdio<Writable, Readable, null>, done: Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'contender.ts'), mode, sc.dir, sc.name, sc.url ?? '', vm], { stdio: ['pipe', 'pipe', 'inherit'] })
  const done = new Promise<void>(resolve => { child.on('exit', () => { resolve() }) })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.trim()) })
    child.on('error', reject)
    void done.then(() => { resolve(out.trim()) })
  })
  return { line, child, done }
}

const vmRecord = { host: 'h1', nics: [{ name: 'eth0', address: '198.18.1.10', mac: '52:54:00:00:00:01', tap: 'tp0' }], memory: { requestedBytes: 64, allocatedBytes: 32 }, cpus: 1, image: 'tiny' }

export function stateCompliance (t: Test, store: StoreUnderTest): void {
  t.test(`${store.kind}: rows survive reopening; updates and deletes`, async t => {
    const sc = store.fresh()
    const s = open(sc)
    t.ok(s.isEmpty(), 'a new supercloud is empty')
    s.putNetwork({ driver: 'local', specHash: 'n', status: 'creating' })
    s.putHost({ name: 'h1', site: 'a', driver: 'local', specHash: 'x', status: 'creating', bootstrapped: false })
    s.putHost({ name: 'h1', site: 'a', driver: 'local', specHash: 'x2', status: 'ready', bootstrapped: true, accel: 'tcg', accelReason: 'no kvm', record: { address: '198.18.1.2' } as never })
    s.putVm({ name: 'v1', host: 'h1', specHash: 'y', status: 'ready', record: vmRecord })
    s.putVm({ name: 'v2', host: 'h1', specHash: 'z', status: 'failed', error: 'boom' })
    s.setMeta('k', 'one')
    s.setMeta('k', 'two')
    const prefix = s.prefix()
    s.close()
    const again = open(sc)
    t.strictSame(again.host('h1'), { name: 'h1', site: 'a', driver: 'local', specHash: 'x2', status: 'ready', bootstrapped: true, accel: 'tcg', accelReason: 'no kvm', record: { address: '198.18.1.2' } })
    t.strictSame(again.vm('v1'), { name: 'v1', host: 'h1', specHash: 'y', status: 'ready', record: vmRecord })
    t.equal(again.vm('v2')?.error, 'boom')
    t.strictSame(again.networks(), [{ driver: 'local', specHash: 'n', status: 'creating' }])
    t.equal(again.getMeta('k'), 'two')
    t.equal(again.getMeta('absent'), undefined)
    t.equal(again.prefix(), prefix, 'the prefix is chosen once')
    t.match(prefix, /^sc[0-9a-f]{4}$/)
    t.strictSame(again.vms().map(v => v.name), ['v1', 'v2'])
    again.deleteVm('v2')
    again.deleteHost('h1')
    again.deleteNetwork('local')
    t.equal(again.host('h1'), undefined)
    t.strictSame(again.snapshot(), { networks: [], hosts: [], vms: [again.vm('v1')] })
    t.ok(again.allMeta().some(m => m.key === 'prefix' && m.value === prefix), 'allMeta lists every key')
    again.close()
  })

  t.test(`${store.kind}: operations, host keys, journal`, async t => {
    const s = open(store.fresh())
    s.insertOperation({ id: 'op1', kind: 'up', who: 'a@b', pid: 1, started: '2026-01-01T00:00:00.000Z' })
    s.insertOperation({ id: 'op2', kind: 'migrate', subject: 'v1', who: 'a@b', pid: 2, started: '2026-01-01T00:00:01.000Z' })
    t.ok(s.requestCancel('op1', 'c@d'))
    t.equal(s.operation('op1')?.cancelBy, 'c@d')
    s.finishOperation('op1', 'cancelled', '2026-01-01T00:00:02.000Z')
    t.notOk(s.requestCancel('op1', 'c@d'), 'an ended operation is not cancelled')
    t.strictSame(s.operations({ running: true }).map(o => o.id), ['op2'])
    t.strictSame(s.operations().map(o => [o.id, o.status]), [['op2', 'running'], ['op1', 'cancelled']], 'newest first')
    t.equal(s.operation('op2')?.subject, 'v1')
    s.pinHostKey('h1', 'SHA256:aaa', 'ssh-ed25519 AAAA')
    s.hostKeyPins.pin('h2', 'SHA256:bbb', 'ssh-ed25519 BBBB')
    t.equal(s.hostKeyPins.pinned('h1')?.fingerprint, 'SHA256:aaa')
    t.strictSame(s.hostKeys().map(k => k.host), ['h1', 'h2'])
    t.ok(s.forgetHostKey('h1'))
    t.notOk(s.forgetHostKey('h1'))
    t.equal(s.hostKey('h1'), undefined)
    const a = s.journal('host.ready', 'h1', { accel: 'tcg' })
    const b = s.journal('vm.running', 'v1')
    t.equal(b, a + 1)
    t.strictSame(s.journalSince(a).map(e => [e.kind, e.subject]), [['vm.running', 'v1']])
    t.strictSame(s.journalSince(0)[0]?.detail, { accel: 'tcg' })
    s.close()
  })

  t.test(`${store.kind}: operators: granted, replaced, listed by name, revoked; the grant is seen by another opener`, async t => {
    const sc = store.fresh()
    const s = open(sc)
    t.strictSame(s.operators(), [], 'none at first')
    s.putOperator({ name: 'bob', publicKey: 'ssh-ed25519 BBBB bob', added: '2026-01-01T00:00:00.000Z', by: 'a@b' })
    s.putOperator({ name: 'alice', publicKey: 'ssh-ed25519 AAAA old', added: '2026-01-01T00:00:01.000Z', by: 'a@b' })
    s.putOperator({ name: 'alice', publicKey: 'ssh-ed25519 AAA2 new', added: '2026-01-01T00:00:02.000Z', by: 'c@d' })
    // On PostgreSQL another operator has a local directory of its own; the SQLite file is the directory's.
    const other = open({ ...sc, dir: store.kind === 'postgres' ? join(sc.dir, 'second-operator') : sc.dir })
    t.strictSame(other.operators(), [
      { name: 'alice', publicKey: 'ssh-ed25519 AAA2 new', added: '2026-01-01T00:00:02.000Z', by: 'c@d' },
      { name: 'bob', publicKey: 'ssh-ed25519 BBBB bob', added: '2026-01-01T00:00:00.000Z', by: 'a@b' }
    ], 'by name, the second grant replacing the first')
    t.ok(other.deleteOperator('alice'))
    t.notOk(other.deleteOperator('alice'), 'a second revoke finds none')
    other.close()
    t.strictSame(s.operators().map(o => o.name), ['bob'])
    s.close()
  })

  t.test(`${store.kind}: events are sequenced, filtered, pruned; bounds survive pruning`, async t => {
    const s = open(store.fresh())
    t.strictSame(s.eventBounds(), { oldest: 0, head: 0 })
    const ts = new Date().toISOString()
    const seqs = s.appendEvents([{ ts, type: 'a', vm: 'v1', data: '{}' }, { ts, type: 'b', host: 'h1', data: '{}' }, { ts, type: 'c', vm: 'v2', data: '{"x":1}' }])
    t.strictSame(seqs, [seqs[0], (seqs[0] ?? 0) + 1, (seqs[0] ?? 0) + 2])
    t.strictSame(s.eventsSince(0, { vm: 'v1' }).map(e => e.type), ['a'])
    t.strictSame(s.eventsSince(0, { host: 'h1' }).map(e => e.type), ['b'])
    t.strictSame(s.eventsSince(seqs[0] ?? 0, { limit: 1 }).map(e => e.data), ['{}'])
    s.appendEvents([{ ts, type: 'd', data: '{}' }, { ts, type: 'e', data: '{}' }], 2)
    const bounds = s.eventBounds()
    t.strictSame(bounds, { oldest: (seqs[0] ?? 0) + 3, head: (seqs[0] ?? 0) + 4 }, 'only the newest 2 are kept; the head is the last ever assigned')
    t.strictSame(s.appendEvents([]), [])
    s.close()
  })

  t.test(`${store.kind}: a transaction is all or nothing, nested ones too`, async t => {
    const s = open(store.fresh())
    t.throws(() => s.transaction(() => { s.setMeta('a', '1'); throw new Error('no') }), /no/)
    t.equal(s.getMeta('a'), undefined, 'rolled back')
    const r = s.transaction(() => {
      s.setMeta('b', '1')
      t.throws(() => s.transaction(() => { s.setMeta('c', '1'); throw new Error('inner') }))
      return 7
    })
    t.equal(r, 7)
    t.equal(s.getMeta('b'), '1')
    t.equal(s.getMeta('c'), undefined, 'the inner one alone rolled back')
    s.close()
  })

  t.test(`${store.kind}: locks: another process is refused and named; re-entrant in a process; kill -9 frees`, async t => {
    const sc = store.fresh()
    const a = open(sc)
    const b = open(sc)
    a.lock('up')
    b.lock('up')
    a.unlock()
    const held = await contender(sc, 'lock')
    t.match(held.line, new RegExp(`^locked SC_STATE_LOCKED state .* is locked by running process ${process.pid}`), 'still held for b, and the holder is named')
    if (store.kind === 'postgres') t.match(held.line, / \(\S+@\S+ since \d\d:\d\d:\d\d, up\)/, 'with who holds it, since when, for what')
    await held.done
    b.unlock()
    const other = await contender(sc, 'lock')
    t.match(other.line, /^got \d+$/, 'free after both unlocked')
    const err = (() => { try { a.lock('down'); return undefined } catch (e) { return e } })()
    t.ok(err instanceof StateLockedError, 'refused while the other process holds it')
    t.match((err as Error).message, `locked by running process ${other.line.split(' ')[1] ?? 'x'}`)
    other.child.stdin.write('release\n')
    await other.done
    t.doesNotThrow(() => { a.lock('down') }, 'free once the holder let go')
    a.unlock()
    const died = await contender(sc, 'die')
    await died.done
    t.match(died.line, /^got \d+$/, 'a holder took the lock and was killed with SIGKILL')
    // PostgreSQL frees a session's locks when its backend sees the connection gone: at once on a
    // quiet machine, after a moment on a loaded one (a test run under load 10 saw it still held).
    let freed: unknown
    for (const until = Date.now() + 15_000; ;) {
      try { a.lock('up'); freed = undefined; break } catch (e) { freed = e }
      if (!(freed instanceof StateLockedError) || Date.now() > until) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    t.equal(freed, undefined, 'a holder killed with SIGKILL leaves it free (within seconds)')
    a.unlock()
    a.close()
    b.close()
  })

  t.test(`${store.kind}: move locks: one mover per VM; up refused while a VM moves`, async t => {
    const sc = store.fresh()
    const s = open(sc)
    const mover = await contender(sc, 'move', 'web1')
    t.match(mover.line, /^got \d+$/)
    const err = (() => { try { s.lock('up'); return undefined } catch (e) { return e } })()
    t.ok(err instanceof VmMovingError, 'up refused while web1 moves')
    t.equal((err as VmMovingError).vm, 'web1')
    t.equal((err as VmMovingError).pid, Number(mover.line.split(' ')[1]))
    t.match((err as VmMovingError).message, /being moved by running process \d+ \(\S+@\S+ since \d\d:\d\d:\d\d, migrate web1\)/, 'naming who moves it, since when and why')
    t.throws(() => s.locks.takeMove('web1', 'migrate web1'), VmMovingError, 'a second move of web1 is refused')
    const release = s.locks.takeMove('db1', 'migrate db1')
    t.pass('another VM moves at once')
    release()
    mover.child.stdin.write('release\n')
    await mover.done
    t.strictSame(s.locks.moves(), [], 'no move in progress once it ended')
    t.doesNotThrow(() => { s.lock('up') })
    s.close()
  })

  t.test(`${store.kind}: one serve leads; a standby takes over within seconds of the leader's kill -9`, async t => {
    const sc = store.fresh()
    const s = open(sc)
    const leader = await contender(sc, 'lead')
    t.match(leader.line, /^got \d+$/)
    const said: string[] = []
    let led = 0
    const became = new Promise<void>(resolve => {
      const l = seekLeadership(s.locks, { retryMs: 200, log: line => { said.push(line) }, onLead: () => { led = Date.now(); resolve() } })
      t.teardown(l.stop)
    })
    t.match(said[0], new RegExp(`^standby: .* locked by running process ${leader.line.split(' ')[1] ?? 'x'}.* leads`), 'a standby names the leader')
    await new Promise(resolve => setTimeout(resolve, 500))
    t.equal(led, 0, 'no second leader while the first lives')
    const killed = Date.now()
    leader.child.kill('SIGKILL')
    await became
    t.ok(led - killed < 10_000, `took over ${led - killed} ms after the leader died`)
    t.match(said[said.length - 1], /^leading: /)
    await leader.done
    s.close()
  })
}
