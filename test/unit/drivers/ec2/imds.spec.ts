/**
 * The IMDSv2 client (drivers/ec2/imds.ts) and the agent's interruption watch against the fake
 * server's metadata service (fake-server/imds.ts) on loopback: tokens, 404 until a notice,
 * the notice and the rebalance recommendation, a lost token renewed, events pushed once.
 */
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ImdsClient, ImdsError, parseRebalance } from '../../../../drivers/ec2/imds.ts'
import { imdsAnswer, imdsHandler, type ImdsTokens } from '../../../../drivers/ec2/fake-server/imds.ts'
import type { FakeInstance } from '../../../../drivers/ec2/fake-server/state.ts'
import { InterruptionWatch } from '../../../../blanket-manager/agent/interruption-watch.ts'
import { validateEventInput } from '../../../../blanket-manager/events/schema.ts'

function instance (): FakeInstance {
  return {
    id: 'i-0123456789abcdef0', region: 'us-east-1', reservationId: 'r-1', imageId: 'ami-0d5eb1a2c3d4e5f60', instanceType: 't3.small', keyName: 'k', groupIds: [], subnetId: 'subnet-1',
    az: 'us-east-1a', tags: {}, state: 'running', launchTime: new Date().toISOString(), spot: true, unreachable: false, console: ''
  }
}

async function serve (t: Test, inst: FakeInstance): Promise<{ url: string, tokens: ImdsTokens, requests: string[] }> {
  const tokens: ImdsTokens = { tokens: new Map() }
  const requests: string[] = []
  const handle = imdsHandler(inst, tokens)
  const server = createServer((req, res) => { requests.push(`${req.method ?? ''} ${req.url ?? ''}`); handle(req, res) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tokens, requests }
}

t.test('IMDSv2: a token first, with a TTL; metadata without a valid token is 401', async t => {
  const inst = instance()
  const s = await serve(t, inst)
  t.equal((await fetch(`${s.url}/latest/meta-data/instance-id`)).status, 401, 'no token')
  t.equal((await fetch(`${s.url}/latest/api/token`, { method: 'PUT' })).status, 400, 'no TTL header')
  t.equal((await fetch(`${s.url}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21601' } })).status, 400, 'TTL over 6 h')
  t.equal((await fetch(`${s.url}/latest/api/token`, { method: 'GET' })).status, 405, 'a GET is no token request')
  const tok = await (await fetch(`${s.url}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '60' } })).text()
  const r = await fetch(`${s.url}/latest/meta-data/instance-id`, { headers: { 'x-aws-ec2-metadata-token': tok } })
  t.same([r.status, await r.text()], [200, inst.id])
  t.equal((await fetch(`${s.url}/latest/meta-data/instance-id`, { headers: { 'x-aws-ec2-metadata-token': 'forged' } })).status, 401, 'an unknown token')
  // Expiry (the pure answer, with its clock).
  const tokens: ImdsTokens = { tokens: new Map() }
  const put = imdsAnswer(inst, tokens, { method: 'PUT', path: '/latest/api/token', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '1' } }, 1000)
  const get = (now: number): number => imdsAnswer(inst, tokens, { method: 'GET', path: '/latest/meta-data/instance-id', headers: { 'x-aws-ec2-metadata-token': put.body } }, now).status
  t.same([get(1999), get(2000)], [200, 401], 'a token lives its TTL, not longer')
})

t.test('the client: no notice (404) until an interruption, then the notice; one token for many reads', async t => {
  const inst = instance()
  const s = await serve(t, inst)
  const c = new ImdsClient({ baseUrl: s.url })
  t.equal(await c.instanceAction(), undefined, 'no interruption: nothing')
  t.equal(await c.rebalance(), undefined, 'no rebalance recommendation: nothing')
  t.equal(await c.get('instance-life-cycle'), 'spot')
  inst.rebalance = { noticeTime: '2026-12-07T14:00:00Z' }
  inst.interruption = { action: 'terminate', time: '2026-12-07T14:02:00Z' }
  t.same(await c.instanceAction(), { action: 'terminate', time: '2026-12-07T14:02:00.000Z' })
  t.same(await c.rebalance(), { noticeTime: '2026-12-07T14:00:00.000Z' })
  t.equal(s.requests.filter(r => r.startsWith('PUT')).length, 1, 'the token was asked for once')
})

t.test('the client renews a token the service no longer knows (401), once', async t => {
  const inst = instance()
  const s = await serve(t, inst)
  const c = new ImdsClient({ baseUrl: s.url })
  t.equal(await c.get('instance-type'), 't3.small')
  s.tokens.tokens.clear()
  t.equal(await c.get('instance-type'), 't3.small', 'read again with a new token')
  t.equal(s.requests.filter(r => r.startsWith('PUT')).length, 2)
  const dead = new ImdsClient({ baseUrl: 'http://127.0.0.1:9', timeoutMs: 500 })
  await t.rejects(dead.instanceAction(), ImdsError, 'no service: a typed error')
  inst.interruption = { action: 'terminate', time: 'soon' as never }
  await t.rejects(c.instanceAction(), { code: 'SC_EC2_IMDS' }, 'a malformed notice is an error, not silence')
  t.equal(parseRebalance('{"noticeTime":"2020-11-05T08:22:00Z"}'), '2020-11-05T08:22:00.000Z')
  t.equal(parseRebalance('<html>'), undefined)
})

t.test('the interruption watch pushes host.rebalance and host.interruption once each, and to late subscribers', async t => {
  const inst = instance()
  const s = await serve(t, inst)
  const watch = new InterruptionWatch(new ImdsClient({ baseUrl: s.url }), { intervalMs: 100 })
  const seen: Array<Record<string, unknown>> = []
  watch.subscribe('aws1', ev => seen.push(ev))
  await watch.pollOnce()
  t.same(seen, [], 'nothing before a notice')
  const time = new Date(Date.now() + 30_000).toISOString().replace(/\.\d+Z$/, 'Z')
  inst.interruption = { action: 'terminate', time }
  inst.rebalance = { noticeTime: new Date().toISOString() }
  await watch.pollOnce()
  await watch.pollOnce()
  t.same(seen.map(e => e.type), ['host.rebalance', 'host.interruption'], 'each once')
  const ev = seen[1] as { host: string, data: { deadline: string, action: string, noticeSeconds: number } }
  t.same([ev.host, ev.data.deadline, ev.data.action], ['aws1', new Date(time).toISOString(), 'terminate'])
  t.ok(ev.data.noticeSeconds >= 28 && ev.data.noticeSeconds <= 30, `notice ${ev.data.noticeSeconds} s`)
  for (const e of seen) t.ok(validateEventInput(e).ok, `${String(e.type)} passes the event schema`)
  const late: Array<Record<string, unknown>> = []
  const off = watch.subscribe('aws1', e => late.push(e))
  t.same(late.map(e => e.type), ['host.rebalance', 'host.interruption'], 'a subscriber after the notice gets it at once')
  off()
  inst.interruption = { action: 'terminate', time: new Date(Date.now() + 60_000).toISOString() }
  await watch.pollOnce()
  t.equal(late.length, 2, 'nothing after unsubscribing')
  t.equal(seen.filter(e => e.type === 'host.interruption').length, 2, 'a new notice (another time) is pushed again')
})
