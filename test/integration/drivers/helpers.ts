/** Shared fixtures of the driver integration tests. */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { connect, createServer } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { DriverContext } from '../../../drivers/cloud.ts'
import type { HostSpec, SiteSpec, WanSpec } from '../../../core/spec.ts'
import { ensureSupercloudKey } from '../../../drivers/local/keys.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'

/** A context with a fresh `sct` + 4 hex prefix and directory, swept and removed at teardown. */
export async function testContext (t: Test, sites: Record<string, SiteSpec>, wan: WanSpec = { delayMs: 0 }, name?: string): Promise<DriverContext> {
  const prefix = `sct${randomBytes(2).toString('hex')}`
  registerPrefix(prefix)
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`))
  const keyPath = await ensureSupercloudKey(dir)
  t.teardown(async () => {
    sweepPrefix(prefix)
    await rm(dir, { recursive: true, force: true })
  })
  return { name: name ?? `${prefix}-test`, prefix, dir, keyPath, sites, wan }
}

export function site (name: string, subnet: string): SiteSpec {
  return { name, subnet }
}

export function localHost (name: string, siteName: string, address?: string): HostSpec {
  const spec: HostSpec = { name, site: siteName, driver: 'local', cpus: 1, memoryBytes: 256 * 1024 * 1024, hypervisor: { backend: 'qemu', accel: 'tcg' } }
  if (address !== undefined) spec.local = { address }
  return spec
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => { resolve(typeof addr === 'object' && addr !== null ? addr.port : 0) })
    })
  })
}

/**
 * Publishes a local-driver host's sshd on a loopback port of this machine (an "existing
 * server" for the ssh driver; the root namespace gets no route to the site). Returns the
 * port once it accepts connections; the forwarder is killed at teardown.
 */
export async function publishOnLoopback (t: Test, ctx: DriverContext, site: string, address: string): Promise<number> {
  const port = await freePort()
  const forward = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `EXEC:ip netns exec ${ctx.prefix}-s-${site} socat - TCP\\:${address}\\:22`], { detached: true, stdio: 'ignore' })
  t.teardown(() => { if (forward.pid !== undefined) try { process.kill(-forward.pid, 'SIGKILL') } catch { /* gone */ } })
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>(resolve => {
      const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true) })
      c.on('error', () => resolve(false))
    })
    if (ok) return port
    if (i > 100) throw new Error('the loopback forward did not start')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
