import t from 'tap'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createLocalDriver, ensureSupercloudKey } from '../../../drivers/local/driver.ts'
import { createSshDriver, sshStateDir } from '../../../drivers/ssh/driver.ts'
import { HostAuthError, HostUnreachableError } from '../../../core/errors.ts'
import type { DriverContext, HostRecord } from '../../../drivers/cloud.ts'
import type { HostSpec } from '../../../core/spec.ts'
import { runCloudDriverCompliance } from './cloud-driver.compliance.ts'
import { freePort, localHost, publishOnLoopback, site, testContext } from './helpers.ts'

// The "existing server": a host made by the local driver, published on a loopback port
// of this machine (the root namespace gets no route to the site).
const local = createLocalDriver()
const localCtx = await testContext(t, { a: site('a', '198.18.40.0/24') })
let made: HostRecord | undefined
t.teardown(async () => {
  if (made !== undefined) await local.destroyHost(localCtx, made).catch(() => {})
  await local.destroyNetwork(localCtx).catch(() => {})
})
await local.ensureNetwork(localCtx)
const server = made = await local.createHost(localCtx, localHost('server', 'a'))
const port = await publishOnLoopback(t, localCtx, 'a', server.address)

const driver = createSshDriver()
const sshCtx: DriverContext = { ...localCtx, name: `${localCtx.prefix}-ssh`, sites: { dc: { name: 'dc' } } }
t.teardown(async () => { await driver.destroyHost(sshCtx, { name: 'x', site: 'dc', driver: 'ssh', address: '', ssh: { host: '127.0.0.1', port, username: 'root', privateKeyPath: localCtx.keyPath }, stateDir: sshStateDir(sshCtx.name), guestBridge: '', driverData: {} }).catch(() => {}) })

function sshHost (key: string, p = port): HostSpec {
  return { name: 'srv1', site: 'dc', driver: 'ssh', cpus: 1, memoryBytes: 256 * 1024 * 1024, hypervisor: { backend: 'qemu', accel: 'tcg' }, ssh: { address: '127.0.0.1', port: p, user: 'root', key } }
}

runCloudDriverCompliance(t, {
  driver,
  makeContext: () => sshCtx,
  makeHostSpec: ctx => sshHost(ctx.keyPath)
})

t.test('ssh driver records', async t => {
  const r = await driver.createHost(sshCtx, { ...sshHost(sshCtx.keyPath), ssh: { address: '127.0.0.1', port, user: 'root', key: sshCtx.keyPath, guestBridge: 'br7' } })
  t.equal(r.stateDir, `/var/lib/supercloud/${sshCtx.name}`, 'state dir is /var/lib/supercloud/<supercloud>')
  t.equal(r.guestBridge, 'br7', 'guest bridge from the spec')
  t.ok(await stat(r.stateDir).then(s => s.isDirectory(), () => false), 'createHost made the state dir on the server')
  await driver.destroyHost(sshCtx, r)
  t.notOk(await stat(r.stateDir).then(() => true, () => false), 'destroyHost removed the state dir')
  const plain = await driver.createHost(sshCtx, sshHost(sshCtx.keyPath))
  t.equal(plain.guestBridge, 'scbr0', 'default guest bridge')
  await driver.destroyHost(sshCtx, plain)
})

t.test('a wrong key is a HostAuthError', async t => {
  const other = await ensureSupercloudKey(join(localCtx.dir, 'other-key'))
  await t.rejects(driver.createHost(sshCtx, sshHost(other)), HostAuthError)
})

t.test('an address nobody listens on is a HostUnreachableError', async t => {
  const unused = await freePort()
  await t.rejects(driver.createHost(sshCtx, sshHost(sshCtx.keyPath, unused)), HostUnreachableError)
  const rec = { name: 'srv1', site: 'dc', driver: 'ssh', address: '127.0.0.1', ssh: { host: '127.0.0.1', port: unused, username: 'root', privateKeyPath: sshCtx.keyPath }, stateDir: sshStateDir(sshCtx.name), guestBridge: 'scbr0', driverData: {} }
  t.equal(await driver.describeHost(sshCtx, rec), 'unreachable', 'describeHost says unreachable')
  await driver.destroyHost(sshCtx, rec)
  t.pass('destroyHost of an unreachable server succeeds')
})
