/**
 * core/exec.ts's local runner against real processes: exit statuses, input, output, the
 * error a failure makes, the time limit and cancelling (the process is gone afterwards).
 */
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { localRunner } from '../../../core/exec.ts'
import { CancelledError, RemoteCommandError } from '../../../core/errors.ts'

const here = localRunner()
const dir = await mkdtemp(join(tmpdir(), 'sc-exec-'))
t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })

/** Whether a process still runs (not a zombie). */
async function alive (pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined)
  return stat !== undefined && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

/** Waits for a pid file written by the command, then returns the pid. */
async function pidFrom (path: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim())
    if (pid > 0) return pid
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`no pid in ${path}`)
}

t.test('exit statuses: 0 resolves, others reject unless accepted', async t => {
  t.same(await here.run(['true']), { stdout: '', stderr: '', code: 0 })
  t.equal((await here.run('exit 7', { okStatuses: 'any' })).code, 7, 'any status resolves with okStatuses any')
  t.equal((await here.run('exit 3', { okStatuses: [0, 3] })).code, 3, 'a listed status resolves')
  const err = await here.run('echo first >&2; echo last words >&2; exit 4').catch((e: unknown) => e)
  t.ok(err instanceof RemoteCommandError, 'a failing command rejects with RemoteCommandError')
  const e = err as RemoteCommandError
  t.equal(e.code, 'SC_REMOTE_COMMAND')
  t.equal(e.status, 4)
  t.equal(e.reason, 'status')
  t.equal(e.stderr, 'first\nlast words\n')
  t.match(e.message, /^on local: `echo first .*exit 4` exited 4: first \| last words$/, 'the message names the command and ends with the stderr tail')
  const quiet = await here.run(['sh', '-c', 'echo only stdout; exit 2']).catch((x: unknown) => x) as RemoteCommandError
  t.match(quiet.message, /exited 2: only stdout$/, 'without stderr, the stdout tail')
})

t.test('the stderr tail in the error is its last five lines', async t => {
  const e = await here.run('for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 1').catch((x: unknown) => x) as RemoteCommandError
  t.match(e.message, /: line3 \| line4 \| line5 \| line6 \| line7$/)
  t.notMatch(e.message, /line2/)
})

t.test('argv is not interpreted by a shell; a string is', async t => {
  t.equal((await here.run(['echo', '$HOME; x'])).stdout, '$HOME; x\n')
  t.equal((await here.run('echo a; echo b')).stdout, 'a\nb\n')
  t.equal((await here.run('printf "a\\nb"')).stdout, 'a\nb', 'no newline added or removed')
})

t.test('input reaches the command, then EOF', async t => {
  t.equal((await here.run(['wc', '-c'], { input: Buffer.alloc(300000, 65) })).stdout.trim(), '300000', 'large input')
  t.equal((await here.run(['cat'], { input: 'héllo\n' })).stdout, 'héllo\n', 'utf-8 both ways')
  t.equal((await here.run(['cat'])).stdout, '', 'no input: EOF at once')
  t.equal((await here.run('exit 0', { input: Buffer.alloc(1 << 20) })).code, 0, 'a command that does not read its input')
})

t.test('a command that cannot be started', async t => {
  const e = await here.run(['/nonexistent/sc-no-such-command']).catch((x: unknown) => x) as RemoteCommandError
  t.ok(e instanceof RemoteCommandError)
  t.equal(e.reason, 'start')
  t.equal(e.status, null)
  t.equal((e.cause as NodeJS.ErrnoException).code, 'ENOENT', 'the system error is the cause')
  t.match(e.message, /could not be started: spawn \/nonexistent\/sc-no-such-command ENOENT/)
  t.equal((await here.run(['/nonexistent/x'], { okStatuses: 'any' }).catch((x: unknown) => x) as RemoteCommandError).reason, 'start', 'okStatuses any does not hide it')
})

t.test('the time limit kills the command', async t => {
  const pidFile = join(dir, 'timeout.pid')
  const started = Date.now()
  const e = await here.run(`echo $$ > ${pidFile}; echo partial >&2; exec sleep 30`, { timeoutMs: 500, okStatuses: 'any' }).catch((x: unknown) => x) as RemoteCommandError
  t.ok(Date.now() - started < 5000, 'settles at the limit, not when the command would end')
  t.ok(e instanceof RemoteCommandError, 'rejects even with okStatuses any')
  t.equal(e.reason, 'timeout')
  t.equal(e.status, null)
  t.match(e.message, /exited by signal: timed out after 500 ms \| partial$/)
  const pid = await pidFrom(pidFile)
  let gone = false
  for (let i = 0; i < 50 && !gone; i++) { gone = !(await alive(pid)); if (!gone) await new Promise(resolve => setTimeout(resolve, 20)) }
  t.ok(gone, 'the process is gone')
})

t.test('aborting kills the command and rejects with CancelledError', async t => {
  const pidFile = join(dir, 'abort.pid')
  const ac = new AbortController()
  const p = here.run(['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`], { signal: ac.signal })
  const pid = await pidFrom(pidFile)
  t.ok(await alive(pid), 'runs before the abort')
  ac.abort()
  const e = await p.catch((x: unknown) => x) as CancelledError
  t.ok(e instanceof CancelledError)
  t.equal(e.code, 'SC_CANCELLED')
  t.match(e.message, /^`sh -c .*sleep 30` on local cancelled$/)
  let gone = false
  for (let i = 0; i < 50 && !gone; i++) { gone = !(await alive(pid)); if (!gone) await new Promise(resolve => setTimeout(resolve, 20)) }
  t.ok(gone, 'the process is gone')
  await t.rejects(here.run(['true'], { signal: ac.signal }), CancelledError, 'an aborted signal runs nothing')
})

t.test('a command killed by a signal has no status', async t => {
  const r = await here.run('kill -9 $$', { okStatuses: 'any' })
  t.equal(r.code, null)
  const e = await here.run('kill -9 $$').catch((x: unknown) => x) as RemoteCommandError
  t.match(e.message, /exited by signal: \(killed by SIGKILL\)/)
})
