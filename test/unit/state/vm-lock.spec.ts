/**
 * The move lock of a VM (state/vm-lock.ts) with real processes (move-contender.ts): two moves of
 * one VM never run at once, whoever holds it; `up`/`down` (StateStore.lock) refuse while a move
 * runs; no move starts while they run; the controller's `migrate` holds it for its whole run.
 */
import t from 'tap'
import type { Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { SupercloudError, VmMovingError } from '../../../core/errors.ts'
import { Bench, twoHosts } from '../controller/mem.ts'

interface Contender {
  /** Its first line: `got PID` or `refused PID CODE MESSAGE`. */
  answer: Promise<string>
  exited: Promise<void>
}

/** Contenders not yet exited (killed at the end of each test, so a failing test does not hang on one holding a lock). */
const alive = new Set<ChildProcess>()
t.afterEach(() => { for (const c of alive) c.kill('SIGKILL') })

/** Starts move-contender.ts trying `what` at `goAt`; a winner holds until DIR/release exists (or dies with `die`). */
function contender (dir: string, what: string, goAt = Date.now(), mode = ''): Contender {
  const script = join(import.meta.dirname, 'move-contender.ts')
  const child = spawn(process.execPath, ['--import', 'tsx', script, dir, what, String(goAt), '100', mode], { stdio: ['ignore', 'pipe', 'inherit'] })
  alive.add(child)
  child.on('exit', () => { alive.delete(child) })
  let out = ''
  const answer = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('\n')) resolve(out.split('\n')[0] ?? '') })
    child.on('error', reject)
    child.on('exit', () => { resolve(out.trim()) })
  })
  return { answer, exited: new Promise(resolve => child.on('exit', () => { resolve() })) }
}

async function race (dir: string, whats: string[], mode = ''): Promise<string[]> {
  rmSync(join(dir, 'release'), { force: true })
  const goAt = Date.now() + 2500
  const cs = whats.map(w => contender(dir, w, goAt, mode))
  const outs = await Promise.all(cs.map(async c => await c.answer))
  writeFileSync(join(dir, 'release'), '')
  await Promise.all(cs.map(async c => await c.exited))
  return outs
}

const pidOf = (line: string): string => line.split(' ')[1] ?? 'none'

/** A test bench (controller/mem.ts) after `up` of web on h1 and db on h2. */
async function benchUp (t: Test): Promise<{ b: Bench, spec: ReturnType<typeof twoHosts>, c: ReturnType<Bench['controller']> }> {
  const b = new Bench()
  t.teardown(() => { b.cleanup() })
  const spec = twoHosts({ web: { host: 'h1' }, db: { host: 'h2' } })
  const c = b.controller()
  await c.up(spec)
  return { b, spec, c }
}

/** Checks that another process gets `what` now (then lets it go). */
async function freeFor (t: Test, dir: string, what: string, message: string): Promise<void> {
  rmSync(join(dir, 'release'), { force: true })
  const other = contender(dir, what)
  t.match(await other.answer, /^got \d+$/, message)
  writeFileSync(join(dir, 'release'), '')
  await other.exited
}

t.test('two moves of one VM never run at once: of processes racing for its lock exactly one wins, the others are told who holds it; a SIGKILLed holder leaves it free', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-move-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const [died] = await race(dir, ['move:web'], 'die')
  t.match(died, /^got \d+$/, 'the first holder took the lock, then was killed holding it')
  for (let round = 0; round < 3; round++) {
    const outs = await race(dir, ['move:web', 'move:web', 'move:web', 'move:web'])
    const winners = outs.filter(o => o.startsWith('got '))
    t.equal(winners.length, 1, `round ${round + 1}: exactly one of 4 holds web's move lock (${outs.map(o => o.split(' ')[0]).join(', ')})`)
    const refused = outs.filter(o => o.startsWith('refused '))
    t.equal(refused.length, 3)
    for (const r of refused) t.match(r, new RegExp(`SC_VM_MOVING vm web is being moved by running process ${pidOf(winners[0] ?? '')} `), 'SC_VM_MOVING naming the holder')
  }
})

t.test('moves of different VMs run side by side; up/down refuse while one runs and run after; no move starts while up/down run', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-move-'))
  const s = StateStore.open(dir)
  t.teardown(() => { s.close(); rmSync(dir, { recursive: true, force: true }) })
  const web = contender(dir, 'move:web')
  const db = contender(dir, 'move:db')
  const [w, d] = [await web.answer, await db.answer]
  t.match(w, /^got \d+$/, 'web moves')
  t.match(d, /^got \d+$/, 'db moves beside it')
  const err = (() => { try { s.lock(); return undefined } catch (e) { return e } })()
  t.ok(err instanceof VmMovingError, 'the supercloud lock (up, down) is refused while a VM moves')
  t.equal((err as VmMovingError).code, 'SC_VM_MOVING')
  t.ok([pidOf(w), pidOf(d)].includes(String((err as VmMovingError).pid)), 'naming a mover')
  t.match((err as Error).message, /^vm (web|db) is being moved by running process \d+/)
  writeFileSync(join(dir, 'release'), '')
  await Promise.all([web.exited, db.exited])
  t.doesNotThrow(() => { s.lock() }, 'up/down run once the moves ended')
  rmSync(join(dir, 'release'), { force: true })
  const during = await contender(dir, 'move:web').answer
  t.match(during, new RegExp(`^refused \\d+ SC_STATE_LOCKED state \\S+ is locked by running process ${process.pid}`), 'no move starts while up/down hold the supercloud lock')
  s.unlock()
  await freeFor(t, dir, 'move:web', 'and it starts once they end')
})

t.test("migrate holds the VM's move lock for its whole run: another process cannot move it, up refuses, other VMs move", async t => {
  const { b, spec, c } = await benchUp(t)
  const h1 = b.cloud.host('h1')
  const ac = new AbortController()
  const seen: string[] = []
  h1.faults.holdStream = () => {
    // The stream of web runs (it waits for a cancel): ask other processes now.
    void (async () => {
      const cs = [contender(b.dir, 'move:web'), contender(b.dir, 'up')]
      for (const x of cs) seen.push(await x.answer)
      cs.push(contender(b.dir, 'move:db'))
      seen.push(await cs[2]?.answer ?? '')
      writeFileSync(join(b.dir, 'release'), '')
      await Promise.all(cs.map(async x => await x.exited))
      ac.abort()
    })()
  }
  const err = await c.migrate(spec, 'web', 'h2', { signal: ac.signal }).then(() => undefined, (e: unknown) => e)
  t.equal((err as SupercloudError).code, 'SC_CANCELLED', 'the migration ended by the cancel after the checks')
  const [move, up, other] = seen
  t.match(move, new RegExp(`^refused \\d+ SC_VM_MOVING vm web is being moved by running process ${process.pid} `), 'a second move of web is refused, naming the migrating process')
  t.match(up, new RegExp(`^refused \\d+ SC_VM_MOVING vm web is being moved by running process ${process.pid} `), 'up/down refuse while web moves')
  t.match(other, /^got \d+$/, 'db can move meanwhile')
  await freeFor(t, b.dir, 'move:web', "web's lock is free once its migration ended")
})

t.test('while another process moves a VM, migrate of it and up are refused before anything changes', async t => {
  const { b, spec, c } = await benchUp(t)
  const h1 = b.cloud.host('h1')
  const h2 = b.cloud.host('h2')
  const callsBefore = [...h1.calls, ...h2.calls].length
  const mover = contender(b.dir, 'move:web')
  const got = await mover.answer
  t.match(got, /^got \d+$/)
  const err = await c.migrate(spec, 'web', 'h2').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof VmMovingError, 'migrate is refused')
  t.match((err as Error).message, new RegExp(`^vm web is being moved by running process ${pidOf(got)} `), 'naming the other process')
  const upErr = await c.up(spec).then(() => undefined, (e: unknown) => e)
  t.equal((upErr as SupercloudError).code, 'SC_VM_MOVING', 'up is refused')
  t.equal([...h1.calls, ...h2.calls].length, callsBefore, 'no host was asked anything')
  t.equal(c.store.vm('web')?.status, 'ready', 'web is not claimed')
  t.same(h1.running(), ['web'])
  writeFileSync(join(b.dir, 'release'), '')
  await mover.exited
  const r = await c.migrate(spec, 'web', 'h2')
  t.equal(r.to, 'h2', 'once the other process ended, the migration runs')
})
