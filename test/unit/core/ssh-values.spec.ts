/** The rules for ssh.user / ssh.address / ec2.user: nothing that ssh could read as an option. */
import t from 'tap'
import { sshAddressProblem, sshUserProblem } from '../../../core/ssh-values.ts'

t.test('sshUserProblem: POSIX user names only', async t => {
  for (const ok of ['root', 'ubuntu', 'ec2-user', '_sc', 'a.b', 'x'.repeat(32)]) t.equal(sshUserProblem(ok), undefined, ok)
  for (const bad of ['', '-oProxyCommand=touch /tmp/x', '-l', 'Root', '1abc', '.hidden', 'a b', 'a;b', 'a@b', 'x'.repeat(33), 'root\n']) {
    t.type(sshUserProblem(bad), 'string', JSON.stringify(bad))
  }
  t.match(sshUserProblem('-oProxyCommand=x'), /starts with '-'/)
})

t.test('sshAddressProblem: an IP address or a DNS name', async t => {
  for (const ok of ['198.18.1.10', '::1', '2001:db8::7', 'host-a.example.com', 'example.com.', 'h1', 'ec2-1-2-3-4.compute-1.amazonaws.com']) t.equal(sshAddressProblem(ok), undefined, ok)
  for (const bad of ['', '-oProxyCommand=touch /tmp/x', '-h', '198.18.1', '999.1.1.1', 'a..b', '-a.com', 'a-.com', 'a_b.com', 'host a', 'root@host', 'host:22', 'x'.repeat(64) + '.com']) {
    t.type(sshAddressProblem(bad), 'string', JSON.stringify(bad))
  }
  t.match(sshAddressProblem('-oProxyCommand=x'), /starts with '-'/)
})
