/**
 * Postcopy recovery (drivers/qemu/postcopy-resume.ts), as an outsider sees it. A tiny guest running
 * a verifying memory writer (memload --verify) moves in postcopy between two QEMU backends on this
 * machine, over TLS, through a link that can be cut (cut-relay.ts: a silent drop; the connections
 * it held are reset when it comes back, so without recovery the stream is lost for good):
 *   - cut right after the guest started on the destination, restored 10 s later: the migration
 *     says "paused: stream broke, retrying", then "resumed", completes, and every page verifies;
 *   - on the way back the cut outlasts the bound: SC_MIGRATION_POSTCOPY_STRANDED names where the
 *     guest is, both QEMU processes are alive, the source waits paused in postcopy.
 */
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { GuestDefinition, MigratingGuest, MigrationSummary } from '../../../drivers/hypervisor.ts'
import { createQemuBackend } from '../../../drivers/qemu/backend.ts'
import { runPaths } from '../../../drivers/qemu/args.ts'
import { QmpClient } from '../../../drivers/qemu/qmp.ts'
import { tinyGuestDefinition } from './tiny-guest.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { consoleRoundTrip, pollUntil, processesMentioning } from '../hypervisor/hypervisor.compliance.ts'
import { freePort, typeOnce } from './tls-probes.ts'
import { CutLink } from './cut-relay.ts'

const prefix = `scp${(process.env.SC_TEST_RUN ?? '').slice(0, 3)}${randomBytes(2).toString('hex')}`
const root = await mkdtemp(`/tmp/${prefix}-`)
const img = await buildTinyImage()
const qemu = createQemuBackend()
const name = `${prefix}-pc`
const a = tinyGuestDefinition(img, name, join(root, 'a'))
const b = tinyGuestDefinition(img, name, join(root, 'b'))
const moving = (d: GuestDefinition): MigratingGuest => ({ name, runDir: d.runDir, diskIds: [], swap: false, memoryBytes: d.memoryBytes })
const tls = { identity: `src.${randomBytes(6).toString('hex')}`, key: randomBytes(32).toString('hex') }
const links: CutLink[] = []

t.teardown(async () => {
  for (const l of links) await l.close()
  for (const pid of await processesMentioning(root)) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await rm(root, { recursive: true, force: true })
})

async function inGuest (d: GuestDefinition, cmd: string): Promise<string> {
  const sock = qemu.consoleSocket(d.runDir)
  await consoleRoundTrip(sock, 'echo up-$((6*7))', 'up-42', 120_000)
  return await typeOnce(sock, `${cmd}; echo done-$((6*7))`, 'done-42', 120_000)
}

/** QEMU's migration status at `d` (its main QMP socket: the migration one is the driver's). */
async function migStatus (d: GuestDefinition): Promise<string | undefined> {
  const q = await QmpClient.connect(runPaths(d.runDir).qmp, { timeoutMs: 5000, commandTimeoutMs: 5000 })
  try { return (await q.execute<{ status?: string }>('query-migrate')).status } finally { await q.close() }
}

/** Every page of memload's working set verifies at `d`; it kept writing through the move. */
async function verifyAt (t: Test, d: GuestDefinition, where: string): Promise<void> {
  t.equal((await qemu.status(name, d.runDir)).state, 'running', `runs at ${where}`)
  const out = await inGuest(d, 'kill -USR1 $(pidof memload); sleep 3; grep -c FAILED /tmp/ml.out; grep verify /tmp/ml.out | tail -n 1')
  t.match(out, /verify ok pages=\d+/, `${where}: every memory page verified inside the guest`)
  t.match(out, /^0\s*$/m, `${where}: no page ever failed`)
}

/**
 * Moves the guest from `from` to `to` in postcopy through a fresh cuttable link, which is dropped
 * once the destination runs the guest (its QEMU in postcopy-active) and restored after `cutMs`
 * (never when undefined). Resolves with the summary (or the error) and the messages said.
 */
async function move (from: GuestDefinition, to: GuestDefinition, cutMs: number | undefined, boundMs?: number): Promise<{ result: MigrationSummary | Error, messages: string[], cutAt: number, link: CutLink }> {
  const link = new CutLink()
  links.push(link)
  const at = await qemu.migration.prepareIncoming(to, { listenIp: '127.0.0.1', mode: 'postcopy', port: freePort, tls })
  const messages: string[] = []
  let cutAt = 0
  let watching = false
  const cutOnceRunning = async (): Promise<void> => {
    await pollUntil(async () => await migStatus(to) === 'postcopy-active' ? true : undefined, 60_000, 20)
    link.drop()
    cutAt = Date.now()
    if (cutMs !== undefined) setTimeout(() => { link.restore() }, cutMs)
  }
  const result = await qemu.migration.migrateOut(moving(from), {
    destIp: '127.0.0.1',
    migrationPort: await link.leg(at.migrationPort),
    nbdPort: 0,
    mode: 'postcopy',
    maxDowntimeMs: 300,
    deadlineMs: 120_000,
    holdAtSwitchover: false,
    tls,
    ...(boundMs !== undefined ? { recoveryBoundMs: boundMs } : {}),
    recover: async () => {
      const port = await freePort()
      await qemu.migration.recoverIncoming?.(moving(to), { listenIp: '127.0.0.1', port })
      return await link.leg(port)
    },
    onProgress: p => {
      if (p.message !== undefined) messages.push(p.message)
      if (p.phase === 'postcopy' && !watching) { watching = true; void cutOnceRunning() }
    }
  }).catch((err: unknown) => err instanceof Error ? err : new Error(String(err)))
  return { result, messages, cutAt, link }
}

t.test('setup: the guest boots at A with a verifying memory writer', async t => {
  await qemu.start(a)
  t.ok(await pollUntil(async () => (await qemu.consoleTail(a.runDir, 400)).includes(`SUPERCLOUD-GUEST-READY ${name}`) ? true : undefined, 240_000), 'booted')
  const out = await inGuest(a, 'memload --mb 48 --seconds 0 --write-mbps 8 --verify > /tmp/ml.out 2>&1 & sleep 3; head -n 2 /tmp/ml.out')
  t.match(out, /verify ok/, 'memload filled and verified its 48 MiB')
})

t.test('link cut right after the switch to postcopy, back 10 s later: the migration resumes and completes, memory intact', { timeout: 120_000 }, async t => {
  const { result, messages, cutAt } = await move(a, b, 10_000)
  if (result instanceof Error) throw result
  t.ok(cutAt > 0, 'the link was cut while the guest ran on the destination')
  t.ok(result.postcopy, `postcopy move completed in ${result.totalMs} ms (${result.sentBytes} bytes)`)
  const paused = messages.findIndex(m => m.startsWith('paused: stream broke, retrying'))
  const resumed = messages.findIndex(m => m.startsWith('resumed'))
  t.ok(paused >= 0, `said: ${messages[paused] ?? '(nothing)'}`)
  t.ok(resumed > paused, `then: ${messages[resumed] ?? '(nothing)'}`)
  t.ok(Date.now() - cutAt >= 10_000, 'completed only after the link was back')
  await qemu.migration.finish(moving(b))
  await qemu.destroy(name, a.runDir)
  await verifyAt(t, b, 'B')
})

t.test('a cut that outlasts the bound: SC_MIGRATION_POSTCOPY_STRANDED, both QEMUs alive, the source paused in postcopy', { timeout: 120_000 }, async t => {
  const { result } = await move(b, a, undefined, 12_000)
  t.ok(result instanceof Error, 'the migration gave up')
  t.match(result, { code: 'SC_MIGRATION_POSTCOPY_STRANDED', message: /runs on the destination \(127\.0\.0\.1\).*only the source QEMU on this host holds.*killing either loses the guest/ })
  // Processes, not QMP: the destination's main loop may wait for a page the cut stream owes it.
  t.ok((await processesMentioning(a.runDir)).length > 0, 'the destination QEMU is alive (the guest is there)')
  t.ok((await processesMentioning(b.runDir)).length > 0, 'the source QEMU is alive (it holds pages the guest needs)')
  t.equal(await migStatus(b), 'postcopy-paused', 'the source waits, paused in postcopy')
})
