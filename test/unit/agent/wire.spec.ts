/**
 * The agent protocol over a real unix socket: the agent refuses a bad request before it builds
 * any path (SC_AGENT_BAD_REQUEST naming method and field, nothing created on disk); the client
 * drops and logs a malformed push, and rejects a malformed result with SC_AGENT_BAD_RESULT.
 * The agent here touches no kernel device or guest: every request it gets is refused or
 * answered from its state directory.
 */
import t, { type Test } from 'tap'
import { connect, createServer, type Socket } from 'node:net'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AgentClient } from '../../../blanket-manager/agent/client.ts'
import type { AgentPush, VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import { Agent } from '../../../blanket-manager/agent/server.ts'
import { AgentError } from '../../../core/errors.ts'
import { createQemuBackend } from '../../../drivers/qemu/backend.ts'

async function open (path: string): Promise<Socket> {
  const sock = connect(path)
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  return sock
}

const launch: VmLaunch = {
  name: 'web1',
  cpus: 1,
  memory: { requestedBytes: 64 << 20, allocatedBytes: 64 << 20 },
  image: { kind: 'kernel', kernel: '/nonexistent/vmlinuz' },
  disks: [],
  nics: [],
  bootTimeoutMs: 1000
}

/** A real agent in a temp dir and a client connected to its socket, both gone at the test's end. */
async function startAgent (t: Test): Promise<{ dir: string, agent: Agent, client: AgentClient }> {
  const dir = mkdtempSync(join(tmpdir(), 'sc-agent-wire-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const agent = new Agent({ dir, bridge: 'scwirebr', build: 'test', backend: createQemuBackend() })
  await agent.start()
  const client = new AgentClient('test', await open(agent.socketPath))
  t.teardown(async () => { client.close(); await agent.stop() })
  return { dir, agent, client }
}

t.test('the agent refuses bad requests before building a path', async t => {
  const { dir, agent, client } = await startAgent(t)

  const refused = async (p: Promise<unknown>): Promise<AgentError | undefined> => await p.then(() => undefined, (e: unknown) => e instanceof AgentError ? e : undefined)
  const e1 = await refused(client.createVm({ ...launch, name: '../../escape' }))
  t.equal(e1?.code, 'SC_AGENT_BAD_REQUEST')
  t.match(e1?.message, /vm\.create: params\.name: must be a VM name/)
  const e2 = await refused(client.createVm({ ...launch, nics: [{ name: 'eth0', mac: '52:54:00:00:00:01', tap: 'tap/../../x', address: '198.18.0.2/24' }] }))
  t.match(e2?.message, /vm\.create: params\.nics\[0\]\.tap: must be a device name/)
  const e3 = await refused(client.createVm({ ...launch, disks: [{ name: '../../../tmp/d', sizeBytes: 1 << 20 }] }))
  t.match(e3?.message, /vm\.create: params\.disks\[0\]\.name/)
  t.notOk(existsSync(join(dir, 'escape')) || existsSync(join(dir, 'vms', 'web1')), 'no directory was made for the refused VMs')
  t.same(existsSync(join(dir, 'vms')) ? readdirSync(join(dir, 'vms')) : [], [], 'no VM directory at all')
  const e4 = await refused(client.destroyVm('web1', [], '../keep'))
  t.match(e4?.message, /vm\.destroy: params\.keep: must be a migration id/)
  const e5 = await refused(client.attach({ taps: [{ tap: 'tap0', bridge: 'br 0' }] }))
  t.match(e5?.message, /vw\.attach: params\.taps\[0\]\.bridge/)
  t.same(await client.listVms(), [], 'the agent still answers good requests')

  // Lines that are no request at all.
  const raw = await open(agent.socketPath)
  t.teardown(() => raw.destroy())
  raw.setEncoding('utf8')
  const replies: string[] = []
  raw.on('data', (d: string) => replies.push(...d.split('\n').filter(l => l !== '')))
  raw.write('{not json\n{"id": 7, "method": "vm.explode"}\n{"id": 8, "method": "vm.status"}\n')
  while (replies.length < 3) await new Promise(resolve => setTimeout(resolve, 20))
  const byId = new Map(replies.map(l => { const m = JSON.parse(l) as { id: number, error: { code: string, message: string } }; return [m.id, m.error] }))
  t.equal(byId.get(-1)?.code, 'SC_AGENT_BAD_REQUEST', 'not JSON: bad request, id -1')
  t.equal(byId.get(7)?.code, 'SC_AGENT_UNKNOWN_METHOD', 'unknown method')
  t.match(byId.get(8)?.message, /^vm\.status: params\.name: must be a VM name .*got nothing/, 'missing params: the field is named')
})

t.test('the client drops malformed pushes and rejects malformed results', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-agent-wire-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'fake.sock')
  // An agent of another build: answers every request with what `answer` gives.
  const answer = (method: string): unknown => method === 'vm.status' ? { name: 'web1', state: 'exploded' } : method === 'vm.migrate.active' ? { active: true } : null
  const server = createServer(sock => {
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      for (const line of d.split('\n').filter(l => l !== '')) {
        const req = JSON.parse(line) as { id: number, method: string }
        const ts = new Date().toISOString()
        sock.write(`${JSON.stringify({ event: { type: 'migration.progress', ts, vm: 'web1', phase: 'memory', sentBytes: 'lots' } })}\n`)
        sock.write('not json at all\n')
        sock.write(`${JSON.stringify({ event: { type: 'migration.switchover', ts, vm: 'web1' } })}\n`)
        sock.write(`${JSON.stringify({ id: req.id, ok: true, result: answer(req.method) })}\n`)
      }
    })
  })
  await new Promise<void>(resolve => server.listen(path, resolve))
  t.teardown(() => { server.close() })
  const logged: string[] = []
  const client = new AgentClient('host-x', await open(path), { log: l => logged.push(l) })
  t.teardown(() => client.close())
  const events: Array<AgentPush['event']> = []
  client.onEvent(ev => events.push(ev))

  t.equal(await client.migrationActive('web1'), true, 'a good result is returned')
  const err = await client.vmStatus('web1').then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof AgentError, 'a malformed result is a typed error')
  t.equal((err as AgentError).code, 'SC_AGENT_BAD_RESULT')
  t.match((err as AgentError).message, /host-x answered vm\.status with a malformed result: result\.state/)
  t.same(events.map(e => e.type), ['migration.switchover', 'migration.switchover'], 'listeners saw only the valid pushes')
  t.equal(client.dropped, 4, 'two malformed lines per request dropped')
  t.match(logged[0], /agent on host-x: dropped a malformed message \(event\.sentBytes: must be a number/)
})

t.test('a sector table of megabytes reaches the agent; a line over the limit is refused with a reason', async t => {
  const { agent, client } = await startAgent(t)

  // 60,000 pages in a repository (~2 MB of JSON): the size a 256M swap reached in the Overdriver
  // e2e, where a 1 MiB line limit made the destination agent drop the connection mid-migration.
  const entries = Array.from({ length: 60000 }, (_, i): [number, number, number, number] => [i * 8, 0, i, i * 4096])
  const table = { version: 1 as const, pageSize: 4096, repositories: [{ address: '198.18.0.1:7709', capability: 'ab'.repeat(16) }], entries }
  t.ok(JSON.stringify(table).length > 1 << 20, 'the table is over 1 MiB')
  const err = await client.overdriverAdoptTable('web1', table).then(() => undefined, (e: unknown) => e as AgentError)
  t.equal(err?.code, 'SC_AGENT_BAD_REQUEST', 'the agent read the whole request and answered it')
  t.match(err?.message, /web1 has no swap export on this host/)
  t.same(await client.listVms(), [], 'the connection still serves')

  // Over the limit: the caller learns why, instead of a bare "connection closed".
  const raw = new AgentClient('test', await open(agent.socketPath))
  t.teardown(() => raw.close())
  const huge = { ...table, padding: 'x'.repeat(65 << 20) }
  const over = await raw.overdriverAdoptTable('web1', huge).then(() => undefined, (e: unknown) => e as AgentError)
  t.equal(over?.code, 'SC_AGENT_BAD_REQUEST')
  t.match(over?.message, /request line of over 67108864 bytes was refused/)
  t.same(await client.listVms(), [], 'other connections are unaffected')
})
