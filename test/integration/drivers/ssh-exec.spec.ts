/**
 * SshConnection.exec against a real sshd (a local-driver host): exit statuses, output, stdin
 * and stderr come back as the command made them, with the exit status line it appends.
 */
import t from 'tap'
import { createLocalDriver } from '../../../drivers/local/driver.ts'
import { SshConnection } from '../../../core/ssh.ts'
import { RemoteCommandError } from '../../../core/errors.ts'
import { localHost, site, testContext } from './helpers.ts'

const local = createLocalDriver()
const ctx = await testContext(t, { a: site('a', '198.18.42.0/24') })
t.teardown(async () => { await local.destroyNetwork(ctx).catch(() => {}) })
await local.ensureNetwork(ctx)
const host = await local.createHost(ctx, localHost('h1', 'a'))
t.teardown(async () => { await local.destroyHost(ctx, host).catch(() => {}) })
const c = await SshConnection.connect('h1', host.ssh)
t.teardown(() => c.close())

t.test('exit statuses are the command\'s own', async t => {
  t.equal((await c.exec('true')).code, 0)
  t.equal((await c.exec('exit 7', { allowFailure: true })).code, 7, 'exit in the command')
  t.equal((await c.exec('false; echo after; exit 3', { allowFailure: true })).code, 3)
  t.equal((await c.exec('sh -c "kill -9 \\$\\$"', { allowFailure: true })).code, 137, 'a child killed by a signal')
  await t.rejects(c.exec('ls /nonexistent-sc-path'), RemoteCommandError, 'a failing command rejects')
})

t.test('output, stderr and stdin are unchanged', async t => {
  t.equal((await c.exec('printf "a\\nb"')).stdout, 'a\nb', 'no newline added or removed')
  t.equal((await c.exec('echo one; echo two')).stdout, 'one\ntwo\n')
  t.equal((await c.exec('echo oops >&2; exit 2', { allowFailure: true })).stderr, 'oops\n')
  t.equal((await c.exec('wc -c', { stdin: Buffer.alloc(100000, 65) })).stdout.trim(), '100000', 'stdin reaches the command')
  t.equal((await c.exec('cd /tmp && pwd')).stdout, '/tmp\n')
  t.equal((await c.exec('cat <<EOF\nhere $((1+2))\nEOF')).stdout, 'here 3\n', 'here-documents work')
})

t.test('as a CommandRunner: argv quoted for the shell, the time limit and cancelling', async t => {
  t.equal(c.host, 'h1')
  t.equal((await c.run(['printf', '%s|', "it's", '$HOME', 'a b'])).stdout, "it's|$HOME|a b|", 'argv reaches the command as it is')
  t.equal((await c.run(['sh', '-c', 'exit 6'], { okStatuses: [6] })).code, 6)
  const e = await c.run(['ls', '/nonexistent-sc-path']).catch((x: unknown) => x) as RemoteCommandError
  t.match(e.message, /^on h1: `ls \/nonexistent-sc-path` exited 2: /)
  const started = Date.now()
  const slow = await c.run('exec sleep 30', { timeoutMs: 500 }).catch((x: unknown) => x) as RemoteCommandError
  t.equal(slow.reason, 'timeout')
  t.ok(Date.now() - started < 5000, 'settles at the limit')
  const ac = new AbortController()
  const p = c.run(['sleep', '30'], { signal: ac.signal })
  setTimeout(() => { ac.abort() }, 200)
  await t.rejects(p, { code: 'SC_CANCELLED' })
  t.equal((await c.exec('echo still here')).stdout, 'still here\n', 'the connection still works')
})
