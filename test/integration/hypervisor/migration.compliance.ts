/**
 * Live migration every HypervisorBackend must show (its `migration` member), between two
 * instances of the backend: two run dirs on one host (QEMU) or two hosts. Run by
 * runHypervisorCompliance when given `migration`.
 *
 * One guest boots at the source and gets a marker in its memory (a file in its initramfs); then:
 *   1. cancel while the memory is copied: migrateOut rejects SC_CANCELLED, the guest runs at the source;
 *   2. the destination dies mid-copy: migrateOut rejects SC_MIGRATION_FAILED, the guest runs at the source;
 *   3. the guest moves (held at the switchover until `continue`): it runs at the destination
 *      after `finish`, with the marker, and no longer runs at the source.
 * Cases 1 and 2 need a copy slow enough to act during it: `slowBandwidth` (QEMU honours it), and
 * run pre-copy (a switch to post-copy could not be undone). A backend with no bandwidth cap
 * (Xen: `xl migrate` has none and ignores `bandwidth`) passes `slowLink`, which slows the
 * link to the destination instead, for those two cases only.
 */
import { createServer } from 'node:net'
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { GuestDefinition, HypervisorBackend, MigratingGuest, OutgoingMigration } from '../../../drivers/hypervisor.ts'
import type { MigrationProgress } from '../../../core/migration.ts'
import { migrationX509 } from '../../../core/tls-cert.ts'

export interface MigrationComplianceOptions {
  /** Another instance of the backend (another run dir or another host): the destination. */
  target: HypervisorBackend
  /** The guest's definition at the destination (same name; its runDir there). */
  makeTargetDefinition: (name: string) => GuestDefinition
  /** Address the destination listens on (the source sends there). */
  listenIp: string
  /** Free ports at the destination; default: checked by binding them on this machine. */
  port?: (avoid: number[]) => Promise<number>
  /** Local path of a socket carrying the destination's console socket; default the path itself. */
  targetConsoleSocket?: (path: string) => Promise<string>
  /** Bytes/s that make the memory copy last tens of seconds (cases 1 and 2). Default 256 KiB/s. */
  slowBandwidth?: number
  /**
   * For a backend that cannot cap its own copy (Xen): slows the link to the destination to
   * `bytesPerSecond` (e.g. tc tbf) for cases 1 and 2; resolves with how to make it fast again.
   * Absent: the cap is only asked of migrateOut (`bandwidth`).
   */
  slowLink?: (bytesPerSecond: number) => Promise<() => Promise<void>>
}

/** What the suite shares with the migration cases (runHypervisorCompliance's). */
export interface MigrationComplianceContext {
  backend: HypervisorBackend
  name: string
  def: GuestDefinition
  ready: string
  bootTimeoutMs: number
  consolePath: (p: string) => Promise<string>
  roundTrip: (socketPath: string, line: string, expect: string, timeoutMs: number) => Promise<string>
  pollUntil: <T>(fn: () => Promise<T | undefined>, timeoutMs: number, intervalMs?: number) => Promise<T | undefined>
}

/** A free TCP port on `ip` (not one of `avoid`), found by binding port 0. */
async function localPort (ip: string, avoid: number[]): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, ip, () => {
        const a = srv.address()
        srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
      })
    })
    if (!avoid.includes(port)) return port
  }
}

export async function runMigrationCompliance (t: Test, c: MigrationComplianceContext, m: MigrationComplianceOptions): Promise<void> {
  const { backend: source, name, def } = c
  const { target } = m
  const tdef = m.makeTargetDefinition(name)
  const port = m.port ?? (async (avoid: number[]) => await localPort(m.listenIp, avoid))
  const targetConsole = m.targetConsoleSocket ?? (async (p: string) => p)
  const guestAt = (d: GuestDefinition): MigratingGuest => ({ name, runDir: d.runDir, diskIds: d.disks.map(x => x.id), swap: d.swap !== undefined, memoryBytes: d.memoryBytes })
  const nonce = randomBytes(3).toString('hex')
  // Typed as `sc-$((6*7))-<nonce>`, so the marker text is never what was typed.
  const marker = `sc-42-${nonce}`
  t.teardown(async () => {
    await target.destroy(name, tdef.runDir).catch(() => {})
    await source.destroy(name, def.runDir).catch(() => {})
  })

  /** The guest answers on the source's console (it runs there). */
  const answersAtSource = async (t: Test, what: string): Promise<void> => {
    t.equal((await source.status(name, def.runDir)).state, 'running', `${what}: the guest runs at the source`)
    const got = await c.roundTrip(await c.consolePath(source.consoleSocket(def.runDir)), 'cat /sc-mark', marker, 60_000).catch((e: Error) => e.message)
    t.ok(got.includes(marker), `${what}: the guest answers at the source, marker intact`)
    t.equal((await target.status(name, tdef.runDir)).state, 'absent', `${what}: nothing left at the destination`)
  }

  /** Prepares the destination and starts migrateOut; resolves with the outcome promise once the memory copy runs. */
  const startMove = async (p: Partial<OutgoingMigration>): Promise<{ outcome: Promise<unknown>, progress: MigrationProgress[] }> => {
    const mode = p.mode ?? 'auto'
    // Each move with its own TLS credentials, as the controller draws them (both backends require
    // them; Xen's stream needs the x509 pair, QEMU ignores it).
    const tls = { identity: `src.${randomBytes(6).toString('hex')}`, key: randomBytes(32).toString('hex'), x509: await migrationX509() }
    const at = await target.migration.prepareIncoming(tdef, { listenIp: m.listenIp, mode, port, tls })
    const progress: MigrationProgress[] = []
    let copying = (): void => {}
    const copy = new Promise<void>(resolve => { copying = resolve })
    const outcome = source.migration.migrateOut(guestAt(def), {
      destIp: m.listenIp,
      migrationPort: at.migrationPort,
      nbdPort: at.nbdPort,
      mode,
      maxDowntimeMs: 300,
      deadlineMs: 240_000,
      holdAtSwitchover: false,
      tls,
      ...(at.selfConfig !== undefined ? { selfConfig: at.selfConfig } : {}),
      onProgress: pr => {
        progress.push(pr)
        if (pr.phase === 'memory' && pr.sentBytes > 0) copying()
      },
      ...p
    })
    outcome.catch(() => {})
    await Promise.race([copy, outcome.then(() => {}, () => {})])
    return { outcome, progress }
  }

  /** startMove for cases 1 and 2: pre-copy, slow (the cap, and the slow link when the backend has no cap). */
  const startSlowMove = async (t: Test): Promise<{ outcome: Promise<unknown> }> => {
    const bandwidth = m.slowBandwidth ?? 256 * 1024
    if (m.slowLink !== undefined) {
      const fast = await m.slowLink(bandwidth)
      t.teardown(fast)
    }
    return await startMove({ mode: 'precopy', bandwidth })
  }

  await t.test(`${source.kind}: migration setup: the guest boots at the source and holds a marker`, async t => {
    await source.start(def)
    const booted = await c.pollUntil(async () => (await source.consoleTail(def.runDir, 400)).includes(c.ready) ? true : undefined, c.bootTimeoutMs)
    t.ok(booted, 'booted at the source')
    const got = await c.roundTrip(await c.consolePath(source.consoleSocket(def.runDir)), `echo sc-$((6*7))-${nonce} > /sc-mark; cat /sc-mark`, marker, 60_000)
    t.ok(got.includes(marker), 'marker written and read back')
  })

  await t.test(`${source.kind}: migration cancelled during the copy: the guest keeps running at the source`, async t => {
    const { outcome } = await startSlowMove(t)
    t.equal(source.migration.active(name), true, 'active while it runs')
    source.migration.cancel(name)
    await t.rejects(outcome, { code: 'SC_CANCELLED' }, 'migrateOut rejects as cancelled')
    t.equal(source.migration.active(name), false, 'no longer active')
    t.throws(() => { source.migration.cancel(name) }, { code: 'SC_MIGRATION_NOT_RUNNING' }, 'a second cancel: not running')
    await target.destroy(name, tdef.runDir)
    await answersAtSource(t, 'after cancel')
  })

  await t.test(`${source.kind}: the destination dies during the copy: the guest keeps running at the source`, async t => {
    const { outcome } = await startSlowMove(t)
    await target.destroy(name, tdef.runDir)
    await t.rejects(outcome, { code: 'SC_MIGRATION_FAILED' }, 'migrateOut rejects as failed')
    await answersAtSource(t, 'after the failed destination')
  })

  await t.test(`${source.kind}: the guest moves, held at the switchover until continue, and keeps its marker`, async t => {
    t.throws(() => { source.migration.continue(name) }, { code: 'SC_MIGRATION_NOT_HELD' }, 'continue with no migration held is refused')
    let held = false
    const { outcome, progress } = await startMove({
      holdAtSwitchover: true,
      onSwitchover: () => {
        held = true
        setTimeout(() => { source.migration.continue(name) }, 200)
      }
    })
    const summary = await outcome as Awaited<ReturnType<HypervisorBackend['migration']['migrateOut']>>
    t.ok(held, 'the switchover was reported and held')
    t.ok(summary.sentBytes > 0, `summary: ${summary.sentBytes} bytes sent in ${summary.totalMs} ms`)
    const fractions = progress.map(p => p.fraction)
    t.same(fractions, [...fractions].sort((a, b) => a - b), 'progress never runs backwards')
    await target.migration.finish(guestAt(tdef))
    t.equal((await target.status(name, tdef.runDir)).state, 'running', 'runs at the destination after finish')
    t.not((await source.status(name, def.runDir)).state, 'running', 'no longer runs at the source')
    const got = await c.roundTrip(await targetConsole(target.consoleSocket(tdef.runDir)), 'cat /sc-mark', marker, 60_000).catch((e: Error) => e.message)
    t.ok(got.includes(marker), 'the marker written before the move is there at the destination')
    await source.destroy(name, def.runDir)
    t.equal((await target.status(name, tdef.runDir)).state, 'running', 'destroying the source copy leaves the destination running')
  })
}
