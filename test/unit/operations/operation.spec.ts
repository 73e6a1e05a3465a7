/**
 * Operations against a real state store (SQLite in a temp dir) and a real event hub: the
 * events another terminal sees, and a cancel asked from another process's view of the state.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { EventHub } from '../../../blanket-manager/events/hub.ts'
import { runOperation } from '../../../blanket-manager/operations/operation.ts'
import { RemoteCommandError } from '../../../core/errors.ts'

import type { Test } from 'tap'

function bed (t: Test): { store: StateStore, other: StateStore, hub: EventHub, types: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'sc-op-'))
  const store = StateStore.open(dir)
  const other = StateStore.open(dir)
  const hub = new EventHub(store)
  t.teardown(() => { store.close(); other.close(); rmSync(dir, { recursive: true, force: true }) })
  return { store, other, hub, types: () => other.eventsSince(0).map(e => e.type) }
}

t.test('a completed operation: started, its progress steps, completed, in the shared event stream', async t => {
  const { store, other, hub, types } = bed(t)
  const r = await runOperation({ store, publish: ev => { hub.publish(ev) }, who: 'alice@laptop' }, { kind: 'up' }, async op => {
    op.onProgress({ subject: 'host h1', phase: 'provision', message: 'creating namespace' })
    op.onProgress({ subject: 'vm v1', phase: 'boot', message: 'booting', fraction: 0.5 })
    return 42
  })
  t.equal(r, 42)
  t.strictSame(types(), ['operation.started', 'operation.progress', 'operation.progress', 'operation.completed'])
  const ev = other.eventsSince(0)
  t.match(ev[0]?.data, /alice@laptop/)
  const rows = other.operations({ running: false })
  t.equal(rows.length, 1)
  t.equal(rows[0]?.status, 'completed')
  t.equal(other.operations({ running: true }).length, 0)
})

t.test('a failed operation records the failure with its code and rethrows it', async t => {
  const { store, other, hub, types } = bed(t)
  await t.rejects(runOperation({ store, publish: ev => { hub.publish(ev) }, who: 'bob@desk' }, { kind: 'down' }, async () => {
    throw new RemoteCommandError('h1', 'ip link del x', 1, 'Cannot find device')
  }), { code: 'SC_REMOTE_COMMAND' })
  t.strictSame(types(), ['operation.started', 'operation.failed'])
  t.match(other.eventsSince(0)[1]?.data, /SC_REMOTE_COMMAND/)
  t.equal(other.operations()[0]?.status, 'failed')
})

t.test('cancel from another terminal: the work is aborted, operation.cancelled names who asked', async t => {
  const { store, other, hub, types } = bed(t)
  let id = ''
  const run = runOperation({ store, publish: ev => { hub.publish(ev) }, who: 'alice@laptop', pollMs: 50 }, { kind: 'migrate', subject: 'db1', onStart: i => { id = i } }, async op => {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, 10_000)
      op.signal.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('aborted by signal')) }, { once: true })
    })
    return 'finished'
  })
  t.match(id, /^[0-9a-f]{8}$/)
  t.equal(other.operations({ running: true })[0]?.id, id, 'the other terminal sees it running')
  const t0 = Date.now()
  t.ok(other.requestCancel(id, 'bob@desk'), 'cancel accepted')
  await t.rejects(run, { code: 'SC_CANCELLED' })
  t.ok(Date.now() - t0 < 2000, 'stopped within 2 s of the request')
  t.strictSame(types(), ['operation.started', 'operation.cancelled'])
  t.match(other.eventsSince(0)[1]?.data, /bob@desk/)
  t.equal(other.operation(id)?.status, 'cancelled')
  t.notOk(other.requestCancel(id, 'bob@desk'), 'an ended operation cannot be cancelled')
})

t.test("the caller's own interrupt (Ctrl-C) cancels as well", async t => {
  const { store, hub, types } = bed(t)
  const ac = new AbortController()
  const run = runOperation({ store, publish: ev => { hub.publish(ev) }, who: 'alice@laptop' }, { kind: 'up', signal: ac.signal }, async op => {
    await new Promise((_resolve, reject) => op.signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true }))
  })
  setTimeout(() => ac.abort(), 20)
  await t.rejects(run, { code: 'SC_CANCELLED' })
  t.strictSame(types(), ['operation.started', 'operation.cancelled'])
})
