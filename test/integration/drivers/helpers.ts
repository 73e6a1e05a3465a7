/** Shared fixtures of the driver integration tests. */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { DriverContext } from '../../../drivers/cloud.ts'
import type { HostSpec, SiteSpec, WanSpec } from '../../../blanket-manager/spec/types.ts'
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
