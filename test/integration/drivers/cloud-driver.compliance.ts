/**
 * Compliance suite every CloudDriver must pass. A driver's spec file calls
 * `runCloudDriverCompliance(t, { driver, makeContext, makeHostSpec })`.
 */
import type { Test } from 'tap'
import type { CloudDriver, DriverContext, HostRecord } from '../../../drivers/cloud.ts'
import type { HostSpec } from '../../../core/spec.ts'
import { SshConnection } from '../../../core/ssh.ts'

export interface ComplianceOptions {
  driver: CloudDriver
  /** A fresh context (own prefix and directory); the suite makes and removes its network. */
  makeContext: () => DriverContext | Promise<DriverContext>
  makeHostSpec: (ctx: DriverContext) => HostSpec | Promise<HostSpec>
  /** How many sshd listeners serve the host (drivers that start sshd themselves). */
  countSshd?: (record: HostRecord) => Promise<number>
  /** Extra proof the host is gone after destroyHost (e.g. no namespace left). */
  assertGone?: (t: Test, record: HostRecord) => Promise<void>
}

/** Runs `command` on the host through the record's SshEndpoint (proxy command included). */
export async function sshRun (record: HostRecord, command: string): Promise<string> {
  const conn = await SshConnection.connect(record.name, record.ssh, { timeoutMs: 20000 })
  try {
    return (await conn.exec(command, { timeoutMs: 20000 })).stdout
  } finally {
    conn.close()
  }
}

export function runCloudDriverCompliance (t: Test, o: ComplianceOptions): void {
  t.test(`${o.driver.name} driver compliance`, async t => {
    const ctx = await o.makeContext()
    let record: HostRecord | undefined
    t.teardown(async () => {
      if (record !== undefined) await o.driver.destroyHost(ctx, record).catch(() => {})
      await o.driver.destroyNetwork(ctx).catch(() => {})
    })
    await o.driver.ensureNetwork(ctx)
    await o.driver.ensureNetwork(ctx)
    t.pass('ensureNetwork twice succeeds')
    const spec = await o.makeHostSpec(ctx)

    const phases: string[] = []
    const first = await o.driver.createHost(ctx, spec, { onProgress: ev => phases.push(ev.phase) })
    record = first
    t.equal(first.name, spec.name, 'record names the host')
    t.equal(first.driver, o.driver.name, 'record names the driver')
    t.ok(first.stateDir.length > 0 && first.guestBridge.length > 0, 'record has a state dir and a guest bridge')
    t.ok(phases.length > 0, 'createHost reports progress')
    t.equal((await sshRun(first, 'echo reachable')).trim(), 'reachable', 'a command runs over SSH with the returned endpoint')

    const second = await o.driver.createHost(ctx, spec)
    record = second
    t.equal(second.address, first.address, 'createHost twice keeps the address')
    t.same(second.ssh, first.ssh, 'createHost twice keeps the SSH endpoint')
    if (o.countSshd !== undefined) t.equal(await o.countSshd(second), 1, 'still exactly one sshd')
    t.equal((await sshRun(second, 'echo again')).trim(), 'again', 'host still reachable after the second createHost')

    t.equal(await o.driver.describeHost(ctx, second), 'running', 'describeHost says running')

    await o.driver.destroyHost(ctx, second)
    t.equal(await o.driver.describeHost(ctx, second), 'gone', 'describeHost says gone after destroyHost')
    if (o.assertGone !== undefined) await o.assertGone(t, second)
    await o.driver.destroyHost(ctx, second)
    t.pass('destroyHost again succeeds')
    record = undefined
    await o.driver.destroyNetwork(ctx)
    await o.driver.destroyNetwork(ctx)
    t.pass('destroyNetwork twice succeeds')
  })
}
