import t from 'tap'
import {
  EndpointWriteError, LineBuffer, applyCommand, checkCommand, endpointIdOfFile, formatEndpoint,
  formatLastError, parseAddress, parseConnectorId, parseCreate, parseDestroy, parseRepoint, parseWrite,
  type EndpointCommand
} from '../../../../virtualwire/endpoint/interface.ts'
import type { EndpointConfig } from '../../../../virtualwire/types.ts'

function errnoOf (r: unknown): string | undefined {
  return r instanceof EndpointWriteError ? r.errno : undefined
}

t.test('addresses: ipv4[:port], default port 4789', async t => {
  t.same(parseAddress('198.18.1.10'), { ip: '198.18.1.10', port: 4789 })
  t.same(parseAddress('198.18.1.10:8472'), { ip: '198.18.1.10', port: 8472 })
  t.same(parseAddress('127.0.0.1:1'), { ip: '127.0.0.1', port: 1 })
  t.same(parseAddress('1.2.3.4:65535'), { ip: '1.2.3.4', port: 65535 })
  for (const bad of ['', 'host', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.4:', '1.2.3.4:0', '1.2.3.4:65536',
    '1.2.3.4:08', '1.2.3.4:x', '[::1]:4789', 'fe80::1', '0.0.0.0', '0.1.2.3', '224.0.0.1', '239.1.1.1', '255.255.255.255', ' 1.2.3.4']) {
    const r = parseAddress(bad)
    t.equal(errnoOf(r), 'EINVAL', `'${bad}' is EINVAL`)
    t.ok(r instanceof EndpointWriteError && r.reason.length > 10, `'${bad}' has a reason`)
  }
})

t.test('connector IDs: decimal 1..16777215, ERANGE outside, EINVAL when not a number', async t => {
  t.equal(parseConnectorId('1'), 1)
  t.equal(parseConnectorId('16777215'), 16777215)
  t.equal(parseConnectorId('007'), 7)
  for (const r of ['0', '16777216', '-1', '99999999999999999999999']) t.equal(errnoOf(parseConnectorId(r)), 'ERANGE', r)
  for (const r of ['', 'x', '0x10', '1.5', '1e3', '5a']) t.equal(errnoOf(parseConnectorId(r)), 'EINVAL', r)
})

t.test('create: "<N> <AdrA> <AdrB>"', async t => {
  t.same(parseCreate('7 198.18.1.10:4789 198.18.2.10:4789\n'), {
    kind: 'create', config: { id: 7, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.2.10', port: 4789 } }
  })
  t.same(parseCreate('  9\t198.18.1.10   198.18.1.10  '), {
    kind: 'create', config: { id: 9, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } }
  }, 'tabs and extra spaces; collapsed')
  t.equal(errnoOf(parseCreate('')), 'EINVAL', 'empty line')
  t.equal(errnoOf(parseCreate('7 198.18.1.10')), 'EINVAL', 'missing AdrB')
  t.equal(errnoOf(parseCreate('7 198.18.1.10 198.18.2.10 extra')), 'EINVAL', 'extra field')
  t.equal(errnoOf(parseCreate('seven 198.18.1.10 198.18.2.10')), 'EINVAL', 'non-numeric id')
  t.equal(errnoOf(parseCreate('0 198.18.1.10 198.18.2.10')), 'ERANGE', 'id 0')
  t.equal(errnoOf(parseCreate('16777216 198.18.1.10 198.18.2.10')), 'ERANGE', 'id too big')
  t.equal(errnoOf(parseCreate('7 198.18.1.300 198.18.2.10')), 'EINVAL', 'bad AdrA')
  t.equal(errnoOf(parseCreate('7 198.18.1.10 nowhere')), 'EINVAL', 'bad AdrB')
  const mismatch = parseCreate('7 198.18.1.10:4789 198.18.2.10:4790')
  t.equal(errnoOf(mismatch), 'EINVAL', 'port mismatch')
  t.match((mismatch as EndpointWriteError).reason, /4789.*4790.*same port/)
  t.equal(errnoOf(parseCreate('7 198.18.1.10:4790 198.18.2.10')), 'EINVAL', 'explicit vs default port')
  t.equal(errnoOf(parseCreate('7 198.18.1.10:4789 198.18.1.10:4790')), 'EINVAL', 'same ip, other port is not collapsed: refused')
})

t.test('re-point and destroy', async t => {
  t.same(parseRepoint(5, '198.18.3.10\n'), { kind: 'repoint', id: 5, remote: { ip: '198.18.3.10', port: 4789 } })
  t.equal(errnoOf(parseRepoint(5, '')), 'EINVAL')
  t.equal(errnoOf(parseRepoint(5, '198.18.3.10 198.18.3.11')), 'EINVAL')
  t.equal(errnoOf(parseRepoint(5, '198.18.3')), 'EINVAL')
  t.same(parseDestroy('5\n'), { kind: 'destroy', id: 5 })
  t.equal(errnoOf(parseDestroy('')), 'EINVAL')
  t.equal(errnoOf(parseDestroy('5 6')), 'EINVAL')
  t.equal(errnoOf(parseDestroy('five')), 'EINVAL')
  t.equal(errnoOf(parseDestroy('0')), 'ERANGE')
  t.equal(errnoOf(parseDestroy('20000000')), 'ERANGE')
})

t.test('parseWrite dispatches on the file name', async t => {
  t.equal((parseWrite('create', '1 1.1.1.1 2.2.2.2') as EndpointCommand).kind, 'create')
  t.equal((parseWrite('destroy', '1') as EndpointCommand).kind, 'destroy')
  t.same(parseWrite('12', '2.2.2.2:4789'), { kind: 'repoint', id: 12, remote: { ip: '2.2.2.2', port: 4789 } })
  t.equal(errnoOf(parseWrite('last_error', 'x')), 'EACCES')
  t.equal(errnoOf(parseWrite('foo', 'x')), 'ENOENT')
  t.equal(errnoOf(parseWrite('0', '2.2.2.2')), 'ENOENT', 'no file 0 can exist')
  t.equal(errnoOf(parseWrite('012', '2.2.2.2')), 'ENOENT', 'files are canonical decimal')
})

t.test('endpoint file names', async t => {
  t.equal(endpointIdOfFile('5'), 5)
  t.equal(endpointIdOfFile('16777215'), 16777215)
  for (const n of ['0', '05', '16777216', 'create', '', '5.txt', '-5']) t.equal(endpointIdOfFile(n), undefined, n)
})

const e5: EndpointConfig = { id: 5, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.2.10', port: 4789 } }
const e9: EndpointConfig = { id: 9, local: { ip: '198.18.1.10', port: 4789 }, remote: { ip: '198.18.1.10', port: 4789 } }

t.test('checkCommand: EEXIST, ENOENT, port of AdrC', async t => {
  const cur = new Map([[5, e5], [9, e9]])
  t.equal(errnoOf(checkCommand({ kind: 'create', config: e5 }, cur)), 'EEXIST')
  t.equal(checkCommand({ kind: 'create', config: { ...e5, id: 6 } }, cur), undefined)
  t.equal(errnoOf(checkCommand({ kind: 'repoint', id: 6, remote: e5.remote }, cur)), 'ENOENT')
  t.equal(errnoOf(checkCommand({ kind: 'repoint', id: 5, remote: { ip: '198.18.3.10', port: 4790 } }, cur)), 'EINVAL')
  t.equal(checkCommand({ kind: 'repoint', id: 5, remote: { ip: '198.18.3.10', port: 4789 } }, cur), undefined)
  t.equal(errnoOf(checkCommand({ kind: 'destroy', id: 6 }, cur)), 'ENOENT')
  t.equal(checkCommand({ kind: 'destroy', id: 9 }, cur), undefined)
})

t.test('applyCommand returns the next configuration without touching the current one', async t => {
  const cur = new Map([[5, e5]])
  const created = applyCommand({ kind: 'create', config: e9 }, cur)
  t.same([...created.keys()], [5, 9])
  t.same([...cur.keys()], [5])
  const moved = applyCommand({ kind: 'repoint', id: 5, remote: { ip: '198.18.3.10', port: 4789 } }, cur)
  t.same(moved.get(5), { ...e5, remote: { ip: '198.18.3.10', port: 4789 } })
  t.same(cur.get(5), e5)
  t.same([...applyCommand({ kind: 'destroy', id: 5 }, cur).keys()], [])
})

t.test('read format', async t => {
  t.equal(formatEndpoint({ ...e5, id: 7 }, 'sc12'), '7 198.18.1.10:4789 198.18.2.10:4789 encap bridge=sc12b7 dev=sc12x7')
  t.equal(formatEndpoint(e9, 'sc12'), '9 198.18.1.10:4789 198.18.1.10:4789 collapsed bridge=sc12b9')
  t.equal(formatEndpoint({ ...e5, id: 255 }, 'sc12'), '255 198.18.1.10:4789 198.18.2.10:4789 encap bridge=sc12bff dev=sc12xff', 'device names carry the hex ID')
  t.equal(formatLastError('create', '5 a b\n', new EndpointWriteError('EINVAL', 'why')), 'EINVAL create "5 a b": why')
})

t.test('line buffer: complete lines now, the rest at close', async t => {
  const b = new LineBuffer()
  t.same(b.push('5 1.1.1.1 '), [])
  t.same(b.push('2.2.2.2\n6 1.1'), ['5 1.1.1.1 2.2.2.2'])
  t.same(b.push('.1.1 3.3.3.3\r\n\n'), ['6 1.1.1.1 3.3.3.3', ''])
  t.same(b.push('7'), [])
  t.equal(b.takeRest(), '7')
  t.equal(b.takeRest(), '')
})
