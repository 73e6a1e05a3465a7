/**
 * Overdriver wired into the host agent, at the agent RPC level (two real agents in this
 * process, each with its own state dir; the guest is a real QEMU/TCG tiny guest):
 *  - host-b's agent runs a page repository and issues a capability for the VM;
 *  - host-a's agent launches the VM (256M requested, 128M allocated) with `swap: 256M`: it
 *    serves the swap export on <vmDir>/swap.sock, the guest gets the NBD disk as /dev/vda;
 *  - overdriver.configure (1 s interval, low thresholds) + overdriver.subscribe: a memload
 *    burst in the guest gives overload.started → classified transient → swap on → ended
 *    (swap off), no migration, and memload verifies its data;
 * A sustained overload (classified sustained, migration decided and carried out, the guest's
 * memory verified after the move) is tested end to end, through `serve`, by
 * test/e2e/overdriver/overdriver.spec.ts, and the decision rule by the unit tests of
 * overdriver/decision; it is not repeated here at the agent level.
 * Every pushed event passes the event schema's validator.
 */
import t from 'tap'
import { mkdir } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { AgentClient } from '../../../blanket-manager/agent/client.ts'
import type { VmLaunch } from '../../../blanket-manager/agent/protocol.ts'
import { Agent } from '../../../blanket-manager/agent/server.ts'
import { runInConsole } from '../../../blanket-manager/cli/console.ts'
import { validateEventInput } from '../../../blanket-manager/events/schema.ts'
import { createQemuBackend } from '../../../drivers/qemu/backend.ts'
import { buildTinyImage, qemuKernel } from '../../../images/guest/build.ts'
import type { ControllerPolicy } from '../../../overdriver/decision/decide.ts'
import { BOOT_TIMEOUT_MS, haveQemu } from '../images/serial-guest.ts'
import { prefix, tempDir } from './helpers.ts'

const MiB = 1024 * 1024

async function startAgent (t: { teardown: (f: () => void | Promise<void>) => void }, dir: string): Promise<{ agent: Agent, client: AgentClient }> {
  await mkdir(dir, { recursive: true })
  const agent = new Agent({ dir, bridge: `${prefix}br`, build: 'test', backend: createQemuBackend() })
  await agent.start()
  const sock = connect(agent.socketPath)
  await new Promise<void>((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject) })
  const client = new AgentClient(dir, sock)
  t.teardown(async () => { client.close(); await agent.stop() })
  return { agent, client }
}

interface Ev { type: string, vm?: string, data: Record<string, unknown> }

t.test('agent Overdriver: swap export, repository, a transient overload as schema events', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const dir = tempDir(t, 'agents')
  const img = await buildTinyImage({})
  const a = await startAgent(t, join(dir, 'a'))
  const b = await startAgent(t, join(dir, 'b'))

  const repo = await b.client.overdriverRepository({ host: '127.0.0.1', port: 0, capacityBytes: 128 * MiB })
  t.ok(repo.port > 0 && repo.capacityPages === 32768, `host-b runs a page repository on 127.0.0.1:${repo.port}`)
  const vm = `${prefix}v1`
  const grant = await b.client.overdriverIssue({ vm })
  t.match(grant.capability, /^[0-9a-f]{32}$/, 'capability issued')

  const launch: VmLaunch = {
    name: vm,
    cpus: 1,
    memory: { requestedBytes: 256 * MiB, allocatedBytes: 128 * MiB },
    image: { kind: 'kernel', kernel: qemuKernel(img), initrd: img.initrd, readyMarker: 'SUPERCLOUD-GUEST-READY' },
    disks: [],
    nics: [],
    swap: { sizeBytes: 256 * MiB, repositories: [grant] },
    bootTimeoutMs: BOOT_TIMEOUT_MS
  }
  t.teardown(async () => { await a.client.destroyVm(vm).catch(() => {}) })
  await a.client.createVm(launch)
  const consolePath = await a.client.consoleSocket(vm)
  const run = async (cmd: string, timeoutMs = 600_000): Promise<{ output: string, status: number }> => {
    const s = connect(consolePath)
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
    return await runInConsole(s, cmd, timeoutMs)
  }
  const swaps = await run('cat /proc/swaps')
  t.match(swaps.output, /^\/dev\/vda\s+partition/m, 'the guest swaps on /dev/vda (the NBD export, after no data disks)')

  const events: Ev[] = []
  const invalid: string[] = []
  a.client.onEvent(raw => {
    const { ts: _ts, ...rest } = raw
    const v = validateEventInput({ ...rest, host: 'host-a' })
    if (!v.ok) invalid.push(`${JSON.stringify(raw)}: ${v.issues.join('; ')}`)
    if (typeof raw.type === 'string' && raw.type.startsWith('overload.')) events.push(raw as unknown as Ev)
  })
  await a.client.overdriverSubscribe()
  const policy: ControllerPolicy = { intervalMs: 1000, overloadOpsPerSec: 50, window: { size: 600, sustained: 600 }, initialThresholdMs: 600_000, adaptive: { enabled: false, baseCount: 10 }, quietIntervals: 3 }
  const configured = await a.client.overdriverConfigure({ host: 'host-a', policy })
  t.same(configured.vms, [vm], 'the loop watches the VM with a swap disk')

  const waitFor = async (pred: () => boolean, ms: number): Promise<boolean> => {
    const until = Date.now() + ms
    while (Date.now() < until) { if (pred()) return true; await new Promise(resolve => setTimeout(resolve, 250)) }
    return pred()
  }

  // Transient burst.
  const m = await run('memload --mb 200 --seconds 5 --verify')
  t.equal(m.status, 0, 'memload exits 0')
  t.match(m.output, /verify ok pages=51200/, 'memload verified all 200 MiB')
  t.ok(await waitFor(() => events.some(e => e.type === 'overload.ended'), 60_000), 'the overload ended')
  const seq = events.map(e => e.type === 'overload.classified' ? `classified:${String(e.data.classification)}` : e.type === 'overload.swap' ? `swap:${String(e.data.enabled)}` : e.type)
  t.same(seq.slice(0, 3), ['overload.started', 'classified:transient', 'swap:true'], `events: ${seq.join(' ')}`)
  t.ok(seq.indexOf('overload.ended') > 2 && seq.includes('swap:false'), 'ended, then swap off')
  t.notOk(seq.includes('overload.migration-decided'), 'no migration for a transient overload')
  t.ok(events.every(e => e.vm === vm), 'events name the VM')
  const stats = await a.client.overdriverStats() as { vms: Record<string, { counters: { writePages: number }, coopswap: { repositoryWrites: number } }> }
  t.ok((stats.vms[vm]?.counters.writePages ?? 0) > 0, `swap-outs counted by the agent's export: ${stats.vms[vm]?.counters.writePages}`)
  t.ok((stats.vms[vm]?.coopswap.repositoryWrites ?? 0) > 0, `cooperative swap sent ${stats.vms[vm]?.coopswap.repositoryWrites} pages to host-b's repository`)

  t.same(invalid, [], 'every pushed event is valid under the event schema')
})
