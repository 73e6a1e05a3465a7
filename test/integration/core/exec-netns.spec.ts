/**
 * core/exec.ts's local runner inside a network namespace (`ip netns exec`): commands see the
 * namespace, failures name the whole command, and the time limit leaves no process in it.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readlinkSync } from 'node:fs'
import { localRunner } from '../../../core/exec.ts'
import { RemoteCommandError } from '../../../core/errors.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'

const prefix = `sct${randomBytes(2).toString('hex')}`
registerPrefix(prefix)
const ns = `${prefix}-exec`
execFileSync('ip', ['netns', 'add', ns])
t.teardown(() => { sweepPrefix(prefix) })
execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', `${prefix}d0`, 'type', 'veth', 'peer', 'name', `${prefix}d1`])

const inNs = localRunner({ host: 'h1', netns: ns })

t.test('commands run inside the namespace', async t => {
  const links = (await inNs.run(['ip', '-o', 'link', 'show'])).stdout
  t.match(links, new RegExp(`: ${prefix}d0@`), 'the namespace\'s own link is there')
  t.notMatch((await localRunner().run(['ip', '-o', 'link', 'show'])).stdout, new RegExp(`: ${prefix}d0@`), 'and not in the root namespace')
  const here = readlinkSync('/proc/self/ns/net')
  const there = (await inNs.run('readlink /proc/self/ns/net')).stdout.trim()
  t.not(there, here, 'a shell command line runs there too')
  t.equal((await inNs.run(['cat'], { input: 'through\n' })).stdout, 'through\n', 'input reaches it')
})

t.test('a failure names the host and the whole command', async t => {
  const e = await inNs.run(['ip', 'link', 'show', 'sc-no-such-link']).catch((x: unknown) => x) as RemoteCommandError
  t.ok(e instanceof RemoteCommandError)
  t.equal(e.status, 1)
  t.equal(e.command, `ip netns exec ${ns} ip link show sc-no-such-link`)
  t.match(e.message, new RegExp(`^on h1: \`ip netns exec ${ns} ip link show sc-no-such-link\` exited 1: .*sc-no-such-link`))
  const gone = await localRunner({ netns: `${prefix}-none` }).run(['true']).catch((x: unknown) => x) as RemoteCommandError
  t.ok(gone instanceof RemoteCommandError, 'a namespace that does not exist fails the run')
  t.not(gone.status, 0)
})

t.test('the time limit leaves no process in the namespace', async t => {
  const e = await inNs.run(['sleep', '30'], { timeoutMs: 300 }).catch((x: unknown) => x) as RemoteCommandError
  t.equal(e.reason, 'timeout')
  let pids = 'x'
  for (let i = 0; i < 50 && pids !== ''; i++) {
    pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).trim()
    if (pids !== '') await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.equal(pids, '', 'no process left in the namespace')
})
