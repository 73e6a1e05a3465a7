/**
 * The QEMU backend against real qemu-system-x86_64 (TCG), booting the tiny guest image.
 * Guests have no NICs; every run dir is under one temp dir; everything is killed in teardown.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CancelledError, GuestBootError } from '../../../core/errors.ts'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { createQemuBackend, GuestStartError, HypervisorMissingError, waitForConsole } from '../../../drivers/qemu/backend.ts'
import { tinyGuestDefinition } from './tiny-guest.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { pollUntil, processesMentioning, runHypervisorCompliance } from '../hypervisor/hypervisor.compliance.ts'

const MiB = 1024 * 1024
const prefix = `sct${randomBytes(2).toString('hex')}`
// Short root: unix socket paths are limited to 107 bytes.
const root = await mkdtemp(`/tmp/${prefix}-`)
const backend = createQemuBackend()
const img = await buildTinyImage()

t.teardown(async () => {
  for (const pid of await processesMentioning(root)) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await rm(root, { recursive: true, force: true })
})

function tinyGuest (name: string, over: Partial<GuestDefinition> = {}): GuestDefinition {
  return tinyGuestDefinition(img, name, join(root, name), over)
}

/** Guest that boots a kernel without initrd: it panics and reboots forever, never printing the marker. */
async function panicKernel (): Promise<string> {
  const v = (await readdir('/boot')).filter(f => f.startsWith('vmlinuz-')).sort().pop()
  if (v === undefined) throw new Error('no /boot/vmlinuz-*')
  return join('/boot', v)
}

t.test('compliance', async t => {
  // Migration: to a second QEMU backend on this host, the guest's copy in its own run dir.
  const target = createQemuBackend()
  await runHypervisorCompliance(t, {
    backend,
    prefix,
    makeDefinition: name => tinyGuest(name),
    migration: { target, makeTargetDefinition: name => tinyGuest(name, { runDir: join(root, `${name}-dst`) }), listenIp: '127.0.0.1' }
  })
})

t.test('version', async t => {
  t.match(await backend.version(), /^\d+\.\d+/, 'version number of the installed QEMU')
})

t.test('missing QEMU binary is SC_HYPERVISOR_MISSING', async t => {
  const missing = createQemuBackend({ binary: '/nonexistent/qemu' })
  const err = await missing.version().catch((e: unknown) => e)
  t.ok(err instanceof HypervisorMissingError)
  t.equal((err as HypervisorMissingError).code, 'SC_HYPERVISOR_MISSING')
  t.match((err as Error).message, /QEMU is not installed on this host/)
  const name = `${prefix}-nobin`
  await t.rejects(missing.start(tinyGuest(name)), { code: 'SC_HYPERVISOR_MISSING' }, 'start also says QEMU is missing')
  t.equal((await missing.status(name, join(root, name))).state, 'absent')
})

t.test('a kernel path that does not exist fails start with a typed error', async t => {
  const name = `${prefix}-nokern`
  const def = tinyGuest(name, { boot: { kind: 'kernel', kernel: join(root, 'no-such-vmlinuz'), append: 'console=ttyS0' } })
  const err = await backend.start(def).catch((e: unknown) => e)
  t.ok(err instanceof GuestStartError)
  t.equal((err as GuestStartError).code, 'SC_GUEST_START')
  t.match((err as Error).message, /kernel .*no-such-vmlinuz does not exist/)
  t.equal((await backend.status(name, def.runDir)).state, 'absent')
  t.same(await processesMentioning(def.runDir), [])
})

t.test('QEMU exiting at start is reported with its stderr', async t => {
  const name = `${prefix}-badimg`
  const notQcow2 = join(root, 'not-a-qcow2.img')
  await writeFile(notQcow2, Buffer.alloc(1024 * 1024))
  const def = tinyGuest(name, { disks: [{ id: 'data', path: notQcow2, format: 'qcow2' }] })
  const err = await backend.start(def).catch((e: unknown) => e)
  t.ok(err instanceof GuestStartError, 'GuestStartError')
  t.match((err as Error).message, /QEMU exited at start/)
  t.match((err as GuestStartError).stderr, /qcow2/i, 'carries QEMU\'s complaint about the image')
  t.same(await processesMentioning(def.runDir), [], 'no QEMU left behind')
  t.equal((await backend.status(name, def.runDir)).state, 'absent')
})

t.test('a guest that never prints the marker: waitForConsole throws GuestBootError with the console tail', async t => {
  const name = `${prefix}-panic`
  const def = tinyGuest(name, { boot: { kind: 'kernel', kernel: await panicKernel(), append: 'console=ttyS0 panic=-1' } })
  t.teardown(() => backend.destroy(name, def.runDir))
  const st = await backend.start(def)
  t.equal(st.state, 'running', 'QEMU runs (QMP answers) even though the guest cannot boot')
  // Wait until the kernel has said something, so the tail is not empty.
  await waitForConsole(def.runDir, 'Linux version', 120_000)
  const err = await waitForConsole(def.runDir, `SUPERCLOUD-GUEST-READY ${name}`, 3000).catch((e: unknown) => e)
  t.ok(err instanceof GuestBootError, 'GuestBootError')
  const e = err as GuestBootError
  t.equal(e.code, 'SC_GUEST_BOOT')
  t.match(e.message, new RegExp(`guest ${name} failed to boot`), 'names the guest (read from the QEMU process)')
  t.match(e.message, /did not appear on the console within 3 s/)
  t.ok(e.consoleTail.length > 0, 'has a console tail')
  t.match(e.message, /--- last console lines ---/)
  t.ok(e.message.includes(e.consoleTail), 'message carries the tail')
  t.match(await backend.consoleTail(def.runDir, 500), /Linux version/, 'consoleTail reads the log')

  const ac = new AbortController()
  const p = waitForConsole(def.runDir, 'never-printed', 60_000, ac.signal)
  setTimeout(() => ac.abort(), 200)
  await t.rejects(p, CancelledError, 'waitForConsole honours its abort signal')

  await backend.destroy(name, def.runDir)
  t.same(await processesMentioning(def.runDir), [])
})

t.test('a guest keeps running after the process that started it exits', async t => {
  const name = `${prefix}-detach`
  const def = tinyGuest(name, { boot: { kind: 'kernel', kernel: await panicKernel(), append: 'console=ttyS0 panic=-1' } })
  t.teardown(() => backend.destroy(name, def.runDir))
  const backendPath = fileURLToPath(new URL('../../../drivers/qemu/backend.ts', import.meta.url))
  const script = join(root, 'starter.mts')
  await writeFile(script, `import { createQemuBackend } from ${JSON.stringify(backendPath)}\n` +
    `const st = await createQemuBackend().start(JSON.parse(process.argv[2]))\nconsole.log(JSON.stringify(st))\n`)
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(def)], { stdio: ['ignore', 'pipe', 'inherit'] })
    let s = ''
    child.stdout.on('data', (b: Buffer) => { s += b.toString() })
    child.on('error', reject)
    child.on('exit', code => code === 0 ? resolve(s) : reject(new Error(`starter exited ${code}`)))
  })
  const started = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { pid?: number, state?: string }
  t.equal(started.state, 'running', 'the starter process saw it running')
  const now = await backend.status(name, def.runDir)
  t.equal(now.state, 'running', 'still running after the starter exited')
  t.equal(now.pid, started.pid, 'same QEMU process')
  const sid = (await readFile(`/proc/${String(now.pid)}/stat`, 'utf8')).split(') ')[1]?.split(' ')[3]
  t.equal(sid, String(now.pid), 'QEMU leads its own session (detached)')
  await backend.destroy(name, def.runDir)
  t.equal((await backend.status(name, def.runDir)).state, 'absent')
})

t.test('a balloon target in the definition is applied at start', async t => {
  const name = `${prefix}-bal`
  const def = tinyGuest(name, { balloonTargetBytes: 160 * MiB })
  t.teardown(() => backend.destroy(name, def.runDir))
  await backend.start(def)
  await waitForConsole(def.runDir, `SUPERCLOUD-GUEST-READY ${name}`, 180_000)
  const shrunk = await pollUntil(async () => {
    const s = await backend.stats(name, def.runDir)
    return s.balloonActualBytes <= 160 * MiB ? s : undefined
  }, 60_000)
  t.ok(shrunk !== undefined, 'balloon actual reached the target given at start')
  t.equal(shrunk?.memoryBytes, 256 * MiB, 'memory size is still the requested size')
})

t.test('start can be cancelled; nothing is left running', async t => {
  const name = `${prefix}-cancel`
  const def = tinyGuest(name)
  const ac = new AbortController()
  const p = backend.start(def, { signal: ac.signal, onProgress: ev => { if (ev.phase === 'qemu') ac.abort() } })
  await t.rejects(p, CancelledError)
  t.same(await processesMentioning(def.runDir), [], 'no QEMU left behind')
  t.equal((await backend.status(name, def.runDir)).state, 'absent')
})

t.test('detectAccel returns a valid mode with a reason; kvm only when the probe booted', async t => {
  const runDir = join(root, 'probe')
  const r = await backend.detectAccel({ kernel: img.kernel, initrd: img.initrd, readyMarker: 'SUPERCLOUD-GUEST-READY', timeoutMs: 20_000, runDir })
  t.ok(r.mode === 'kvm' || r.mode === 'tcg', `mode ${r.mode}`)
  t.ok(r.reason.length > 0, `reason: ${r.reason}`)
  const console = await readFile(join(runDir, 'console.log'), 'utf8').catch(() => '')
  if (r.mode === 'kvm') t.match(console, /SUPERCLOUD-GUEST-READY probe/, 'kvm chosen only because the probe printed its marker')
  else t.notMatch(console, /SUPERCLOUD-GUEST-READY/, 'tcg: the probe did not boot under KVM')
  t.same(await processesMentioning(runDir), [], 'probe guest removed')
})
