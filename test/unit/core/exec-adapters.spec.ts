/**
 * The older command helpers over core/exec.ts, against real processes: each keeps its own
 * error type, code and message (the local driver's run(), the extender's HostShell, the Xen
 * local executor's lenient contract).
 */
import t from 'tap'
import { run, ShellCommandError } from '../../../drivers/local/sh.ts'
import { localShell } from '../../../virtualwire/extender/manage.ts'
import { ExtenderError } from '../../../virtualwire/extender/errors.ts'
import { localExecutor } from '../../../drivers/xen/exec.ts'

t.test('local driver run(): ShellCommandError with argv, status and stderr', async t => {
  t.equal((await run(['sh', '-c', 'cat; exit 0'], { input: 'in\n' })).stdout, 'in\n')
  t.equal((await run(['sh', '-c', 'exit 5'], { allowFailure: true })).code, 5)
  const e = await run(['sh', '-c', 'echo bad >&2; exit 3']).catch((x: unknown) => x) as ShellCommandError
  t.ok(e instanceof ShellCommandError)
  t.equal(e.code, 'SC_LOCAL_DRIVER')
  t.equal(e.status, 3)
  t.equal(e.stderr, 'bad\n')
  t.equal(e.message, '`sh -c echo bad >&2; exit 3` exited 3: bad')
  const n = await run(['/nonexistent/sc-cmd']).catch((x: unknown) => x) as ShellCommandError
  t.equal(n.message, '`/nonexistent/sc-cmd` failed to run: spawn /nonexistent/sc-cmd ENOENT')
  t.equal((n.cause as NodeJS.ErrnoException).code, 'ENOENT')
})

t.test('HostShell: ExtenderError naming the host and the command', async t => {
  const sh = localShell('h9')
  t.equal(sh.host, 'h9')
  t.equal((await sh.run(['sh', '-c', 'exit 1'], { allowFailure: true })).code, 1)
  const e = await sh.run(['sh', '-c', 'echo nope >&2; exit 2']).catch((x: unknown) => x) as ExtenderError
  t.ok(e instanceof ExtenderError)
  t.equal(e.code, 'SC_EXTENDER')
  t.equal(e.message, 'extender: h9: `sh -c echo nope >&2; exit 2` exited 2: nope')
  await t.rejects(sh.run([]), { code: 'SC_EXTENDER', message: 'extender: empty command' })
  const ac = new AbortController()
  const p = sh.run(['sleep', '30'], { signal: ac.signal })
  setTimeout(() => { ac.abort() }, 100)
  await t.rejects(p, { code: 'SC_CANCELLED', message: '`sleep 30` on h9 cancelled' })
})

t.test('Xen local executor: every status resolves; the time limit is a null status; a missing program is the system error', async t => {
  const x = localExecutor()
  t.equal(x.where, 'local')
  t.same(await x.run(['sh', '-c', 'echo o; echo e >&2; exit 4']), { stdout: 'o\n', stderr: 'e\n', code: 4 })
  t.equal((await x.run(['cat'], { stdin: 'x' })).stdout, 'x')
  const started = Date.now()
  const r = await x.run(['sleep', '30'], { timeoutMs: 300 })
  t.equal(r.code, null)
  t.ok(Date.now() - started < 5000, 'at the limit')
  await t.rejects(x.run(['/nonexistent/xl']), { code: 'ENOENT' })
})
