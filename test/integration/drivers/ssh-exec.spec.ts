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
