/**
 * Operations through the real CLI, as two operators in two terminals would see them: an `up`
 * started in one terminal shows in another's `events --follow` step by step, and `supercloud
 * cancel` from the other terminal stops it; the next `up` converges.
 */
import t from 'tap'
import type { ChildProcess } from 'node:child_process'
import { jsonLines, sandbox } from '../helpers/cli.ts'
import { oneHostSpec, tinyVmLine } from '../helpers/specs.ts'

interface Ev { seq: number, type: string, data: Record<string, unknown> }

async function until<T> (what: string, f: () => T | undefined, ms = 300_000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = f()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

function exited (child: ChildProcess): Promise<number> {
  return new Promise(resolve => child.on('exit', c => resolve(c ?? 137)))
}

t.test('another terminal follows an up step by step and cancels it; the next up converges', async t => {
  const sb = sandbox(t, oneHostSpec({ name: 'opsup', subnet: '198.18.62.0/24', vms: tinyVmLine('v1', { memory: '96M' }) }), 'opsup')
  // Terminal 1: up. Terminal 2: cancel it once it has made some steps.
  const up1 = sb.start(['up'])
  let err1 = ''
  up1.stderr?.on('data', (d: Buffer) => { err1 += d.toString() })
  const code1 = exited(up1)
  const id1 = await until('the operation id on up\'s terminal', () => /operation ([0-9a-f]{8}) \(up\)/.exec(err1)?.[1])
  t.teardown(() => { if (up1.exitCode === null) up1.kill('SIGKILL') })
  // Terminal 2 follows the event stream from its start (the supercloud exists once up said its
  // operation id; `events --follow` refuses one that does not exist yet).
  const follower = sb.start(['events', '--follow', '--json', '--since', '0'])
  const events = jsonLines<Ev>(follower)
  t.teardown(() => { follower.kill('SIGTERM') })
  await until('two progress steps in the other terminal', () => events.filter(e => e.type === 'operation.progress' && e.data.operation === id1).length >= 2 ? true : undefined)
  const listed = await sb.run(['operations'])
  t.match(listed.stdout, new RegExp(`${id1}\\s+running\\s+up`), '`operations` lists the running up')
  const cancel = await sb.run(['cancel', id1])
  t.equal(cancel.code, 0, cancel.stderr)
  t.equal(await code1, 130, 'the cancelled up exits 130')
  t.match(err1, /SC_CANCELLED/)
  const cancelled = await until('operation.cancelled', () => events.find(e => e.type === 'operation.cancelled' && e.data.operation === id1))
  t.match(String(cancelled.data.by), /@/, 'the cancel names who asked')
  const again = await sb.run(['cancel', id1])
  t.equal(again.code, 2)
  t.match(again.stderr, /SC_OPERATION_ENDED/)

  // The next up converges, and the other terminal sees it from start to completion.
  const up2 = await sb.run(['up'])
  t.equal(up2.code, 0, up2.stderr)
  const id2 = /operation ([0-9a-f]{8}) \(up\)/.exec(up2.stderr)?.[1]
  t.ok(id2 !== undefined && id2 !== id1)
  const done = await until('operation.completed', () => events.find(e => e.type === 'operation.completed' && e.data.operation === id2), 30_000)
  t.equal(done.data.kind, 'up')
  const steps = events.filter(e => e.type === 'operation.progress' && e.data.operation === id2)
  t.ok(steps.length >= 2, `the other terminal saw ${steps.length} steps of the second up`)
  const status = JSON.parse((await sb.run(['status', '--json'])).stdout) as { vms: Array<{ name: string, state: string }> }
  t.equal(status.vms.find(v => v.name === 'v1')?.state, 'running', JSON.stringify(status))
  t.equal((await sb.run(['operations'])).stdout.trim(), 'no operations running')

  // down is an operation too; it removes the state, its own record with it.
  const down = await sb.run(['down'])
  t.equal(down.code, 0, down.stderr)
  t.match(down.stderr, /operation [0-9a-f]{8} \(down\)/)
  t.match(down.stderr, /down: everything removed/)
})
