import t from 'tap'
import { DelayQueue } from '../../../drivers/local/delay-queue.ts'
import { sshdConfig } from '../../../drivers/local/sshd-config.ts'

t.test('delay queue releases items after the delay, in order', async t => {
  const q = new DelayQueue<Buffer>(20)
  q.push(Buffer.from('a'), 0)
  q.push(Buffer.from('b'), 5)
  t.same(q.takeDue(19), [])
  t.equal(q.nextDue(), 20)
  t.same(q.takeDue(20).map(String), ['a'])
  t.same(q.takeDue(100).map(String), ['b'])
  t.equal(q.size, 0)
  t.equal(q.nextDue(), undefined)
})

t.test('delay queue drops past its byte limit', async t => {
  const q = new DelayQueue<Buffer>(1, 10)
  t.ok(q.push(Buffer.alloc(6), 0))
  t.notOk(q.push(Buffer.alloc(6), 0))
  t.equal(q.dropped, 1)
  q.takeDue(5)
  t.ok(q.push(Buffer.alloc(6), 5), 'room again once released')
})

t.test('sshd config', async t => {
  const c = sshdConfig({ address: '198.18.1.10', hostKeyPath: '/d/key', pidFile: '/d/sshd.pid', authorizedKeysFile: '/d/authorized_keys' })
  for (const line of ['ListenAddress 198.18.1.10:22', 'HostKey /d/key', 'PidFile /d/sshd.pid', 'AuthorizedKeysFile /d/authorized_keys',
    'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PubkeyAuthentication yes',
    'AllowStreamLocalForwarding yes', 'AllowTcpForwarding yes', 'StrictModes no', 'UsePAM no', 'Subsystem sftp internal-sftp']) {
    t.ok(c.split('\n').includes(line), line)
  }
})
