/** `supercloud ssh`'s OpenSSH command line: pinned key only, no agent forwarding, `--` before the destination. */
import t from 'tap'
import { knownHostsLine, sshArgs } from '../../../blanket-manager/cli/ssh-args.ts'

const ep = { host: '198.18.1.10', port: 2222, username: 'ops', privateKeyPath: '/sc/key' }

t.test('strict checking against the pinned key under the host\'s name, no agent', async t => {
  const a = sshArgs('host-a', ep, '/sc/known_hosts.d/host-a', [], true)
  const opts = a.flatMap((x, i) => a[i - 1] === '-o' ? [x] : [])
  for (const o of ['ForwardAgent=no', 'StrictHostKeyChecking=yes', 'UserKnownHostsFile=/sc/known_hosts.d/host-a', 'HostKeyAlias=host-a', 'IdentitiesOnly=yes', 'GlobalKnownHostsFile=/dev/null']) {
    t.ok(opts.includes(o), o)
  }
  t.notOk(opts.some(o => /accept-new|StrictHostKeyChecking=no/.test(o)))
  t.strictSame(a.slice(-4), ['-l', 'ops', '--', '198.18.1.10'])
  t.ok(a.includes('-t'))
  t.equal(knownHostsLine('host-a', 'ssh-ed25519 AAAA'), 'host-a ssh-ed25519 AAAA\n')
})

t.test('the destination and the command come after --: a value starting with - is never an option', async t => {
  const a = sshArgs('h', { ...ep, host: '-oProxyCommand=touch /tmp/x' }, '/k', ['uname', '-a'], false)
  const dd = a.indexOf('--')
  t.ok(dd > 0)
  t.strictSame(a.slice(dd), ['--', '-oProxyCommand=touch /tmp/x', 'uname', '-a'])
  t.notOk(a.includes('-t'))
})

t.test('`supercloud ssh HOST -- CMD`: the user\'s -- is not sent as part of the remote command', async t => {
  // ssh reads no option after its own `--`, so a second one reached the remote shell as `sh -c '-- xl list'`
  // ("sh: -c requires an argument"; seen in the Xen e2e).
  const a = sshArgs('h', ep, '/k', ['--', 'xl list'], false)
  t.strictSame(a.slice(a.indexOf('--')), ['--', ep.host, 'xl list'])
  const b = sshArgs('h', ep, '/k', ['ls', '--', 'x'], false)
  t.strictSame(b.slice(b.indexOf('--')), ['--', ep.host, 'ls', '--', 'x'], 'a -- inside the command stays')
})
