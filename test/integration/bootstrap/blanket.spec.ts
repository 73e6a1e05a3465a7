/**
 * The Blanket bootstrap and the host agent against a real namespaced host (local driver,
 * real sshd): missing QEMU, idempotent re-bootstrap, agent restart without touching guests,
 * and malformed agent requests refused with a reason.
 */
import t from 'tap'
import { createLocalDriver } from '../../../drivers/local/driver.ts'
import { SshConnection } from '../../../core/ssh.ts'
import { bootstrapHost } from '../../../blanket-manager/bootstrap/blanket.ts'
import { agentBundle } from '../../../blanket-manager/agent/bundle.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { testContext, site, localHost } from '../drivers/helpers.ts'

const driver = createLocalDriver()
const ctx = await testContext(t, { s1: site('s1', '198.18.20.0/24') })
await driver.ensureNetwork(ctx)
const host = await driver.createHost(ctx, localHost('bh1', 's1'))
const ssh = await SshConnection.connect('bh1', host.ssh)
t.teardown(() => ssh.close())
const tiny = await buildTinyImage()
const image = { id: tiny.id, kernel: tiny.kernel, initrd: tiny.initrd }

t.test('missing QEMU on the host is a clear typed error', async t => {
  const err = await bootstrapHost(host, ssh, { accel: 'tcg', install: false, qemuBinary: '/nonexistent/qemu-system-x86_64', image })
    .then(() => undefined, (e: unknown) => e as Error & { code: string })
  t.equal(err?.code, 'SC_HYPERVISOR_MISSING')
  t.match(err?.message, /QEMU is not available on host bh1: \/nonexistent\/qemu-system-x86_64 not found/)
  t.match(err?.message, /qemu-system-x86/, 'says which package to install')
})

t.test('bootstrap starts the agent once; re-bootstrap reuses it', async t => {
  const bundle = await agentBundle()
  const a = await bootstrapHost(host, ssh, { accel: 'tcg', image })
  t.equal(a.hello.build, bundle.hash)
  t.equal(a.accel.mode, 'tcg')
  t.match(a.accel.reason, /forced by spec/)
  const b = await bootstrapHost(host, ssh, { accel: 'tcg', image })
  t.equal(b.hello.pid, a.hello.pid, 'the same agent process answers')
  a.agent.close()
  b.agent.close()
})

t.test('auto mode probes KVM and records the reason', async t => {
  const r = await bootstrapHost(host, ssh, { accel: 'auto', image, probeTimeoutMs: 15000 })
  t.match(r.accel.mode, /^(kvm|tcg)$/)
  t.equal(r.accel.probed, true, 'a cached forced choice does not answer auto: the host was probed')
  t.notMatch(r.accel.reason, /forced/, `reason: ${r.accel.reason}`)
  const again = await bootstrapHost(host, ssh, { accel: 'auto', image, probeTimeoutMs: 15000 })
  t.same(again.accel, r.accel, 'the probe result is cached on the host')
  r.agent.close()
})

t.test('a guest survives an agent restart', async t => {
  const boot = await bootstrapHost(host, ssh, { accel: 'tcg', image })
  const launch = {
    name: 'g1',
    cpus: 1,
    memory: { requestedBytes: 96 * 1048576, allocatedBytes: 96 * 1048576 },
    image: { kind: 'kernel' as const, kernel: boot.image?.kernel ?? '', initrd: boot.image?.initrd ?? '', readyMarker: 'SUPERCLOUD-GUEST-READY' },
    disks: [],
    nics: [{ name: 'eth0', mac: '52:54:00:12:34:56', tap: `${ctx.prefix}tg1`, address: '198.18.20.150/24' }],
    bootTimeoutMs: 120000
  }
  const started = await boot.agent.createVm(launch)
  t.equal(started.state, 'running')
  const again = await boot.agent.createVm(launch)
  t.equal(again.pid, started.pid, 'creating a running VM again is a no-op')
  // Kill the agent behind the controller's back; the next bootstrap restarts it.
  await ssh.exec(`kill ${boot.hello.pid}`)
  boot.agent.close()
  const next = await bootstrapHost(host, ssh, { accel: 'tcg', image })
  t.not(next.hello.pid, boot.hello.pid, 'a new agent runs')
  const st = await next.agent.vmStatus('g1')
  t.equal(st.state, 'running')
  t.equal(st.pid, started.pid, 'the guest kept running under the new agent')
  await next.agent.destroyVm('g1')
  t.equal((await next.agent.vmStatus('g1')).state, 'absent')
  const links = await ssh.exec('ip -o link show')
  t.notMatch(links.stdout, `${ctx.prefix}tg1`, 'its TAP is gone')
  next.agent.close()
})

t.test('malformed agent requests are refused with a reason', async t => {
  const ch = await ssh.openUnixSocket(`${host.stateDir}/agent.sock`)
  const answers: string[] = []
  ch.on('data', (d: Buffer) => answers.push(...d.toString().split('\n').filter(Boolean)))
  ch.write('this is not json\n')
  ch.write(JSON.stringify({ id: 7, method: 'vm.format-disk', params: {} }) + '\n')
  ch.write(JSON.stringify({ id: 8, method: 'vm.status', params: { name: 42 } }) + '\n')
  ch.write(JSON.stringify({ id: 9, method: 'vm.create', params: { name: '../../etc' } }) + '\n')
  for (let i = 0; i < 100 && answers.length < 4; i++) await new Promise(resolve => setTimeout(resolve, 50))
  const byId = Object.fromEntries(answers.map(a => JSON.parse(a) as { id: number, ok: boolean, error?: { code: string, message: string } }).map(a => [a.id, a]))
  t.match(byId[-1]?.error, { code: 'SC_AGENT_BAD_REQUEST', message: /malformed request/ })
  t.match(byId[7]?.error, { code: 'SC_AGENT_UNKNOWN_METHOD', message: /vm\.format-disk/ })
  t.match(byId[8]?.error, { code: 'SC_AGENT_BAD_REQUEST', message: /^vm\.status: params\.name: must be a VM name .*got 42$/ })
  t.match(byId[9]?.error, { code: 'SC_AGENT_BAD_REQUEST', message: /^vm\.create: params\.name: must be a VM name .*got "\.\.\/\.\.\/etc"$/ })
  ch.end()
  // The agent is still healthy afterwards.
  const r = await bootstrapHost(host, ssh, { accel: 'tcg', image })
  t.equal(r.hello.protocol, 1)
  r.agent.close()
})

t.teardown(async () => {
  await driver.destroyHost(ctx, host).catch(() => {})
  await driver.destroyNetwork(ctx).catch(() => {})
})
