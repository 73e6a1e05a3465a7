/**
 * The controller's reading of the endpoint interface: `cat` output parsed, and whether endpoints
 * read back show a write done (used when the SSH session of a write ended without its exit
 * status: the write is checked rather than failed or blindly repeated).
 */
import t from 'tap'
import { parseEndpointLines, writeTookEffect } from '../../../blanket-manager/wiring/endpoint-files.ts'

const eps = parseEndpointLines('1 198.18.61.10:4789 198.18.61.11:4789\nnot an endpoint\n7 198.18.61.10 198.18.2.5:4790\n')

t.test('cat output: one endpoint per line, the default port filled in, junk skipped', async t => {
  t.same(eps.map(e => [e.id, e.local.ip, e.local.port, e.remote.ip, e.remote.port]), [
    [1, '198.18.61.10', 4789, '198.18.61.11', 4789],
    [7, '198.18.61.10', 4789, '198.18.2.5', 4790]
  ])
})

t.test('a create is done only when the endpoint exists with the same addresses', async t => {
  t.ok(writeTookEffect({ host: 'h', file: 'create', line: '1 198.18.61.10:4789 198.18.61.11:4789' }, eps))
  t.ok(writeTookEffect({ host: 'h', file: 'create', line: '7 198.18.61.10:4789 198.18.2.5:4790' }, eps), 'default port written out or not')
  t.notOk(writeTookEffect({ host: 'h', file: 'create', line: '1 198.18.61.10:4789 198.18.61.12:4789' }, eps), 'same N, other remote: not this write')
  t.notOk(writeTookEffect({ host: 'h', file: 'create', line: '2 198.18.61.10:4789 198.18.61.11:4789' }, eps), 'no endpoint 2')
})

t.test('a re-point is done when the endpoint sends to the new address; a destroy when it is gone', async t => {
  t.ok(writeTookEffect({ host: 'h', file: '7', line: '198.18.2.5:4790' }, eps))
  t.notOk(writeTookEffect({ host: 'h', file: '7', line: '198.18.2.6:4790' }, eps))
  t.notOk(writeTookEffect({ host: 'h', file: '3', line: '198.18.2.5:4790' }, eps), 'no endpoint 3')
  t.ok(writeTookEffect({ host: 'h', file: 'destroy', line: '3' }, eps))
  t.notOk(writeTookEffect({ host: 'h', file: 'destroy', line: '7' }, eps))
})
