/** Page repository: capabilities, capacity, admin calls, against a live server. */
import t from 'tap'
import { RepositoryClient } from '../../../overdriver/repository/client.ts'
import { pattern, repositoryWithClient, startNode, tempDir } from './helpers.ts'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'

t.test('put, get, overwrite, delete; pages are per capability', async t => {
  const { repo, port, c } = await repositoryWithClient(t, { capacityPages: 16 })
  const a = await c.issue(repo.adminToken, 'vm-a')
  const b = await c.issue(repo.adminToken, 'vm-b')
  t.equal(a.length, 16)
  await c.put(a, 1, pattern(1))
  await c.put(b, 1, pattern(2))
  t.ok((await c.get(a, 1))?.equals(pattern(1)))
  t.ok((await c.get(b, 1))?.equals(pattern(2)), 'same page id, other VM, other page')
  await c.put(a, 1, pattern(1, 1))
  t.ok((await c.get(a, 1))?.equals(pattern(1, 1)), 'overwrite')
  t.equal(await c.get(a, 2), undefined, 'missing page')
  t.equal(await c.del(a, 1), true)
  t.equal(await c.del(a, 1), false)
  t.equal(await c.get(a, 1), undefined)
  const s = await c.stats(repo.adminToken)
  t.match(s, { capacityPages: 16, usedPages: 1 })
  t.same(s.vms.map(v => [v.vm, v.pages]).sort(), [['vm-a', 0], ['vm-b', 1]])
})

t.test('no room: the capacity limit and a per-VM limit answer no-room; freeing makes room', async t => {
  const { repo, port, c } = await repositoryWithClient(t, { capacityPages: 4 })
  const small = await c.issue(repo.adminToken, 'small', 1)
  const big = await c.issue(repo.adminToken, 'big')
  await c.put(small, 0, pattern(0))
  await t.rejects(c.put(small, 1, pattern(1)), { code: 'SC_REPOSITORY_FULL', status: 'no-room', message: /small reached its 1 pages/ })
  await c.put(small, 0, pattern(5))
  t.pass('overwriting a held page needs no room')
  for (let i = 0; i < 3; i++) await c.put(big, i, pattern(i))
  await t.rejects(c.put(big, 3, pattern(3)), { status: 'no-room', message: /repository full \(4 pages\)/ })
  await c.del(big, 0)
  await c.put(big, 3, pattern(3))
  t.pass('room again after a delete')
  t.ok(c.alive, 'no-room does not close the connection')
})

t.test('capabilities: unknown ones are refused, admin calls need the admin token, revoke drops pages', async t => {
  const { repo, port, c } = await repositoryWithClient(t, { capacityPages: 8 })
  await t.rejects(c.put(Buffer.alloc(16, 1), 0, pattern(0)), { code: 'SC_REPOSITORY', status: 'bad-capability' })
  await t.rejects(c.issue(Buffer.alloc(16, 2), 'x'), { status: 'denied', message: /admin token/ })
  const cap = await c.issue(repo.adminToken, 'vm')
  await c.put(cap, 0, pattern(0))
  await t.rejects(c.revoke(cap, cap), { code: 'SC_REPOSITORY', status: 'denied' }, 'a VM cannot revoke itself')
  await c.revoke(repo.adminToken, cap)
  await t.rejects(c.get(cap, 0), { code: 'SC_REPOSITORY', status: 'bad-capability' })
  t.equal(repo.stats().usedPages, 0, 'revoked pages are freed')
  await t.rejects(c.issue(repo.adminToken, ''), { code: 'SC_REPOSITORY', status: 'bad-request' })
  t.ok(c.alive)
})

t.test('repository process: admin token file, listens, serves', async t => {
  const dir = tempDir(t, 'repo')
  const tokenFile = join(dir, 'admin.token')
  const { first } = await startNode(t, 'overdriver/repository/main.ts', ['--port', '0', '--capacity', '1M', '--admin-token-file', tokenFile])
  const l = first.listening as { port: number }
  t.equal(first.capacityPages, 256)
  const token = Buffer.from(readFileSync(tokenFile, 'utf8').trim(), 'hex')
  const c = await RepositoryClient.connect({ host: '127.0.0.1', port: l.port })
  const cap = await c.issue(token, 'vm1')
  await c.put(cap, 42, pattern(42))
  t.ok((await c.get(cap, 42))?.equals(pattern(42)))
  c.close()
})
