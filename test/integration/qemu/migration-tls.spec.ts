/**
 * QEMU live migration over TLS (drivers/qemu/migration-tls.ts), as an outsider sees it. A guest
 * with a local disk moves between two QEMU backends on this machine (run dirs under one temp
 * dir, listening on 127.0.0.1), its memory and disk holding a marker text:
 *   - without credentials a migration is refused (SC_MIGRATION_TLS_MISSING) and nothing starts;
 *   - while the destination waits, a plain TCP client writing a migration stream, a TLS client
 *     with a key of its own, and NBD clients without the key or under another identity are all
 *     refused; the NBD server admits only the migration's identity and key;
 *   - the real migration then completes through a relay recording the wire: the guest's memory
 *     (memload --verify) and disk (md5sum) are intact, and the marker never crossed in clear;
 *   - the way back in clear text (asked explicitly) shows the marker on the wire: the relay sees it.
 */
import t, { type Test } from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MigrationSecurity } from '../../../core/migration.ts'
import type { GuestDefinition, MigratingGuest, MigrationSummary } from '../../../drivers/hypervisor.ts'
import { createQemuBackend } from '../../../drivers/qemu/backend.ts'
import { tinyGuestDefinition } from './tiny-guest.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { consoleRoundTrip, pollUntil, processesMentioning } from '../hypervisor/hypervisor.compliance.ts'
import { freePort, nbdInfo, plainWrite, pskHandshake, RecordingRelay, typeOnce } from './tls-probes.ts'

const MiB = 1024 * 1024
const prefix = `sct${(process.env.SC_TEST_RUN ?? '').slice(0, 3)}${randomBytes(2).toString('hex')}`
const root = await mkdtemp(`/tmp/${prefix}-`)
const img = await buildTinyImage()
const src = createQemuBackend()
const dst = createQemuBackend()
const name = `${prefix}-tls`
const nonce = randomBytes(4).toString('hex')
/** Written into the guest's memory (tmpfs) and disk; typed as `sc-$((6*7))…` so the console never carries it. */
const marker = `sc-42-tls-marker-${nonce}`

t.teardown(async () => {
  for (const pid of await processesMentioning(root)) { try { process.kill(pid, 'SIGKILL') } catch {} }
  await rm(root, { recursive: true, force: true })
})

function guest (runDir: string, disk: string): GuestDefinition {
  return tinyGuestDefinition(img, name, runDir, { disks: [{ id: 'data', path: disk, format: 'qcow2' }] })
}
const freshDisk = (file: string): string => { execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '64M']); return file }
const a = guest(join(root, 'a'), freshDisk(join(root, 'a.qcow2')))
const b = guest(join(root, 'b'), freshDisk(join(root, 'b.qcow2')))
const moving = (d: GuestDefinition): MigratingGuest => ({ name, runDir: d.runDir, diskIds: ['data'], swap: false, memoryBytes: d.memoryBytes })
const drawTls = (): { identity: string, key: string } => ({ identity: `src.${randomBytes(6).toString('hex')}`, key: randomBytes(32).toString('hex') })
/** Runs `cmd` once in the guest at `d` (after the shell answered a harmless echo) and resolves with its output. */
async function inGuest (d: GuestDefinition, cmd: string): Promise<string> {
  const sock = src.consoleSocket(d.runDir)
  await consoleRoundTrip(sock, 'echo up-$((6*7))', 'up-42', 120_000)
  return await typeOnce(sock, `${cmd}; echo done-$((6*7))`, 'done-42', 180_000)
}

let memSum = ''
let diskSum = ''

/** Moves the guest from `from` to `to` through recording relays; resolves once it runs at `to`. */
async function move (from: GuestDefinition, to: GuestDefinition, tls: MigrationSecurity, probe?: (ports: { migrationPort: number, nbdPort: number }) => Promise<void>): Promise<{ summary: MigrationSummary, relays: RecordingRelay[] }> {
  const at = await dst.migration.prepareIncoming(to, { listenIp: '127.0.0.1', mode: 'precopy', port: freePort, tls })
  await probe?.(at)
  const relays = [await RecordingRelay.open(at.migrationPort, Buffer.from(marker)), await RecordingRelay.open(at.nbdPort, Buffer.from(marker))]
  try {
    const summary = await src.migration.migrateOut(moving(from), {
      destIp: '127.0.0.1',
      migrationPort: relays[0]?.port ?? 0,
      nbdPort: relays[1]?.port ?? 0,
      mode: 'precopy',
      maxDowntimeMs: 300,
      deadlineMs: 240_000,
      holdAtSwitchover: false,
      tls
    })
    await dst.migration.finish(moving(to))
    return { summary, relays }
  } finally {
    for (const r of relays) await r.close()
  }
}

/** The guest runs at `d`, its memory verifies and its disk has the checksum taken before the moves. */
async function verifyAt (t: Test, d: GuestDefinition, where: string): Promise<void> {
  t.equal((await src.status(name, d.runDir)).state, 'running', `runs at ${where}`)
  const out = await inGuest(d, 'kill -USR1 $(pidof memload); sleep 3; tail -n 2 /tmp/ml.out; md5sum /dev/vda')
  t.match(out, /verify ok/, `${where}: every memory page verified inside the guest`)
  t.equal(/checksum ([0-9a-f]{16})/.exec(out)?.[1], memSum, `${where}: memory checksum unchanged`)
  t.equal(/^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1], diskSum, `${where}: disk checksum unchanged`)
}

t.test('setup: the guest boots at A and holds known memory and disk contents with the marker', async t => {
  await src.start(a)
  t.ok(await pollUntil(async () => (await src.consoleTail(a.runDir, 400)).includes(`SUPERCLOUD-GUEST-READY ${name}`) ? true : undefined, 240_000), 'booted')
  const mark = `sc-$((6*7))-tls-marker-${nonce}`
  const out = await inGuest(a, `memload --mb 32 --hold > /tmp/ml.out 2>&1 & sleep 4; cat /tmp/ml.out; M=${mark}; yes $M | head -c 1048576 > /tmp/mark; dd if=/dev/urandom of=/dev/vda bs=1M count=16 2>/dev/null; dd if=/tmp/mark of=/dev/vda bs=1M seek=20 2>/dev/null; sync; md5sum /dev/vda`)
  memSum = /checksum ([0-9a-f]{16})/.exec(out)?.[1] ?? ''
  diskSum = /^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1] ?? ''
  t.match(memSum, /^[0-9a-f]{16}$/, 'memload filled 32 MiB')
  t.match(diskSum, /^[0-9a-f]{32}$/, 'disk written')
})

t.test('no credentials: SC_MIGRATION_TLS_MISSING on either side, nothing started', async t => {
  await t.rejects(dst.migration.prepareIncoming(b, { listenIp: '127.0.0.1', mode: 'precopy', port: freePort }), { code: 'SC_MIGRATION_TLS_MISSING', message: /incoming.*no TLS credentials/ })
  t.equal((await dst.status(name, b.runDir)).state, 'absent', 'no QEMU started at the destination')
  await t.rejects(src.migration.migrateOut(moving(a), { destIp: '127.0.0.1', migrationPort: 1, nbdPort: 2, mode: 'precopy', maxDowntimeMs: 300, deadlineMs: 10_000, holdAtSwitchover: false }), { code: 'SC_MIGRATION_TLS_MISSING' })
  t.equal((await src.status(name, a.runDir)).state, 'running', 'the guest runs on at the source')
})

t.test('over TLS: outsiders are refused at both ports, the move completes intact, nothing crosses in clear', async t => {
  const tls = drawTls()
  const { summary, relays } = await move(a, b, tls, async at => {
    const dir = join(b.runDir, 'mig-tls')
    t.equal((await stat(dir)).mode & 0o777, 0o700, 'key directory 0700 at the destination')
    t.equal((await stat(join(dir, 'keys.psk'))).mode & 0o777, 0o600, 'key file 0600')
    // The memory stream's port: a clear-text migration stream, then a TLS client with its own key.
    const qevm = Buffer.concat([Buffer.from('QEVM'), Buffer.from([0, 0, 0, 3]), randomBytes(4096)])
    const plain = await plainWrite(at.migrationPort, qevm)
    t.ok(plain.closed, `a clear-text migration stream is cut off (answered ${plain.answer.length} bytes, no migration data)`)
    t.match(await pskHandshake(at.migrationPort, tls.identity, randomBytes(32).toString('hex')), /^(error|closed)/, 'a TLS client with the right identity and another key fails the handshake')
    // The disks' NBD port: without TLS, with another key, under another identity; then the right ones (control).
    const nbdNode = 'drv-data'
    const noTls = await nbdInfo(at.nbdPort, nbdNode)
    t.not(noTls.code, 0, 'an NBD client without TLS is refused')
    t.match(noTls.out, /TLS/, `  ${noTls.out.split('\n')[0] ?? ''}`)
    const probeDir = join(root, 'probe')
    const attempt = async (identity: string, key: string): Promise<{ code: number, out: string }> => {
      await rm(probeDir, { recursive: true, force: true })
      await mkdir(probeDir, { mode: 0o700 })
      await writeFile(join(probeDir, 'keys.psk'), `${identity}:${key}\n`, { mode: 0o600 })
      return await nbdInfo(at.nbdPort, nbdNode, { dir: probeDir, identity })
    }
    const wrongKey = await attempt(tls.identity, randomBytes(32).toString('hex'))
    t.not(wrongKey.code, 0, 'an NBD client with another key is refused')
    t.match(wrongKey.out, /TLS handshake failed/)
    const wrongId = await attempt(`src.${randomBytes(6).toString('hex')}`, tls.key)
    t.not(wrongId.code, 0, 'an NBD client with the key under another identity is refused')
    const right = await attempt(tls.identity, tls.key)
    t.equal(right.code, 0, `control: the migration's own identity and key are admitted (${right.out.split('\n')[0] ?? ''})`)
  })
  t.ok(summary.sentBytes > 16 * MiB, `sent ${summary.sentBytes} bytes in ${summary.totalMs} ms, downtime ${summary.downtimeMs} ms`)
  t.ok(summary.diskSentBytes >= 16 * MiB, `disk mirrored over TLS: ${summary.diskSentBytes} bytes`)
  t.ok((relays[0]?.bytes ?? 0) > 8 * MiB && (relays[1]?.bytes ?? 0) > 16 * MiB, `both streams went through the relays (${relays[0]?.bytes} + ${relays[1]?.bytes} bytes)`)
  t.notOk(relays[0]?.seen, 'the marker in the guest memory never crossed the wire in clear')
  t.notOk(relays[1]?.seen, 'the marker on the guest disk never crossed the wire in clear')
  await t.rejects(stat(join(b.runDir, 'mig-tls')), { code: 'ENOENT' }, 'the destination key file is gone after finish')
  await t.rejects(stat(join(a.runDir, 'mig-tls')), { code: 'ENOENT' }, 'none left at the source')
  t.not((await src.status(name, a.runDir)).state, 'running', 'no longer runs at A')
  await src.destroy(name, a.runDir)
  await verifyAt(t, b, 'B')
})

t.test("clear text, asked with tls: 'off': the relay sees the marker (the recorder is no blind spot)", async t => {
  await rm(join(root, 'a.qcow2'), { force: true })
  freshDisk(join(root, 'a.qcow2'))
  const { relays } = await move(b, a, 'off')
  t.ok(relays[0]?.seen === true || relays[1]?.seen === true, `the marker crossed in clear (memory: ${String(relays[0]?.seen)}, disk: ${String(relays[1]?.seen)})`)
  t.ok(relays[1]?.seen, 'on the disk stream')
  await src.destroy(name, b.runDir)
  await verifyAt(t, a, 'A after the clear-text move back')
})
