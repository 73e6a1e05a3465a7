/**
 * The host side of a fake EC2 instance: a real host made with the `local` driver (the key
 * pair's public key as its authorized key), a public address on the internet, the user-data
 * script run as cloud-init would; and taking all that down again on termination.
 */
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HostRecord } from '../../cloud.ts'
import type { LocalHostData } from '../../local/driver.ts'
import { run } from '../../local/sh.ts'
import { hostStateDir } from '../../host-bootstrap/cloud-init.ts'
import { publicAddressOf } from './internet.ts'
import type { FakeEc2State, FakeInstance, InstanceRuntime } from './state.ts'
import { syncGateway } from './gateway.ts'
import { keysOf } from './key-pairs.ts'
import { consoleFingerprintBlock } from '../../../core/host-keys.ts'
import { serveImds } from './imds.ts'

function nextPublic (s: FakeEc2State): string {
  return publicAddressOf(s.net, s.publicNext++)
}

/** Makes the instance's host; the instance is `running` once it answers SSH (user-data runs after, as cloud-init's does). */
export async function provision (s: FakeEc2State, inst: FakeInstance, rt: InstanceRuntime): Promise<void> {
  const ctx = s.ctx
  if (ctx === undefined) throw new Error('fake EC2 server not started')
  const publicIp = nextPublic(s)
  if (inst.unreachable) {
    // Running, with addresses, but nothing behind them.
    await new Promise(resolve => setTimeout(resolve, 50))
    if (inst.state !== 'pending') return
    inst.privateIp = s.regions[inst.region]?.replace(/\.\d+\/\d+$/, '.250') ?? '198.18.0.250'
    inst.publicIp = publicIp
    inst.state = 'running'
    return
  }
  try {
    const host = await s.local.createHost(ctx, {
      name: inst.id, site: inst.region, driver: 'local', cpus: 1, memoryBytes: 512 * 1024 * 1024, hypervisor: { backend: 'qemu', accel: 'tcg' }
    })
    rt.host = host
    const data = host.driverData as unknown as LocalHostData
    // EC2 puts the key pair's public key in the instance's authorized keys.
    const key = keysOf(s, inst.region).get(inst.keyName)
    await writeFile(join(data.sshdDir, 'authorized_keys'), key !== undefined ? `${key.publicKey}\n` : '', { mode: 0o600 })
    // cloud-init prints the fingerprints of the keys sshd really uses on the console.
    const fp = await run(['ssh-keygen', '-l', '-E', 'sha256', '-f', join(data.sshdDir, 'ssh_host_ed25519_key.pub')])
    inst.console += `[    0.000000] Linux version 6.1.0 (fake EC2 instance ${inst.id})\n${consoleFingerprintBlock([fp.stdout])}`
    if (inst.state !== 'pending') return
    // Its metadata service, at 169.254.169.254 in its namespace (imds.ts).
    rt.imds = await serveImds(inst, data.ns, join(s.opts.dir, `imds-${inst.id}.sock`))
    inst.privateIp = host.address
    inst.publicIp = publicIp
    inst.state = 'running'
    await syncGateway(s)
    rt.userData = runUserData(s, inst, rt, host)
  } catch (err) {
    inst.state = 'terminated'
    inst.stateReason = { code: 'Server.InternalError', message: `Server.InternalError: ${err instanceof Error ? err.message : String(err)}` }
  }
}

/** cloud-init's part: a user-data starting with `#!` runs once as root on the instance. */
async function runUserData (s: FakeEc2State, inst: FakeInstance, rt: InstanceRuntime, host: HostRecord): Promise<void> {
  const script = inst.userData !== undefined ? Buffer.from(inst.userData, 'base64').toString('utf8') : ''
  if (!script.startsWith('#!')) return
  const dir = join(s.opts.dir, 'instances', inst.id)
  const root = join(dir, 'root')
  await mkdir(root, { recursive: true })
  await writeFile(join(dir, 'user-data'), script, { mode: 0o700 })
  const ns = (host.driverData as unknown as LocalHostData).ns
  const r = await run(['ip', 'netns', 'exec', ns, 'env', `SC_HOST_ROOT=${root}`, 'sh', join(dir, 'user-data')], { allowFailure: true })
  inst.userDataExit = r.code
  await writeFile(join(dir, 'console.log'), r.stdout + r.stderr)
  inst.console += r.stdout + r.stderr
}

/** Terminates the instance: its host namespace and every process in it go; `reason` is its state reason (default: user initiated). */
export async function terminate (s: FakeEc2State, inst: FakeInstance, reason = USER_SHUTDOWN): Promise<void> {
  const rt = s.runtime.get(inst.id)
  if (inst.state === 'terminated') return
  inst.state = 'shutting-down'
  if (rt?.reclaim !== undefined) clearTimeout(rt.reclaim)
  await rt?.provisioning?.catch(() => {})
  await rt?.userData?.catch(() => {})
  // Off the internet first (its public address, NAT and rules), then the host.
  await syncGateway(s).catch(() => {})
  if (rt !== undefined) {
    if (rt.host !== undefined && s.ctx !== undefined) await s.local.destroyHost(s.ctx, rt.host)
    rt.host = undefined
    await rt.imds?.close().catch(() => {})
    rt.imds = undefined
  }
  // The root volume goes with the instance: what the bootstrap made there too.
  const sc = inst.tags.supercloud
  const h = inst.tags['supercloud:host']
  if (sc !== undefined && h !== undefined && /^[a-z0-9-]+$/.test(sc) && /^[a-z0-9-]+$/.test(h)) {
    await rm(hostStateDir(sc, h), { recursive: true, force: true })
    await rmdir(`/var/lib/supercloud/${sc}`).catch(() => {})
  }
  await rm(join(s.opts.dir, 'instances', inst.id, 'root'), { recursive: true, force: true })
  inst.state = 'terminated'
  inst.stateReason = reason
}

export const USER_SHUTDOWN = { code: 'Client.UserInitiatedShutdown', message: 'Client.UserInitiatedShutdown: User initiated shutdown' }
export const SPOT_TERMINATION = { code: 'Server.SpotInstanceTermination', message: 'Server.SpotInstanceTermination: Spot instance termination' }
