/**
 * The `local` cloud driver: hosts are network namespaces on this machine, each with its
 * own sshd, on per-site bridges joined by an emulated WAN (tbf bandwidth, user-space delay).
 * Topology, address plan and file layout: docs/drivers.md.
 */
import { join } from 'node:path'
import type { CloudDriver } from '../cloud.ts'
import { checkPrefix } from './names.ts'
import { driverDir, withFileLock } from './files.ts'
import { destroyNetworkLocked, ensureNetworkLocked } from './network.ts'
import { createHost, describeHost, destroyHost } from './host.ts'

export { ensureSupercloudKey } from './keys.ts'
export { listLeftovers, isClean, type Leftovers } from './leftovers.ts'
export { hostSshdPids } from './sshd.ts'
export { hostMac, type LocalHostData } from './host.ts'

/** The driver: network.ts (WAN, sites, delay, uplink) and host.ts (namespaces, sshd or Xen) do the work. */
export function createLocalDriver (): CloudDriver {
  const driver: CloudDriver = {
    name: 'local',

    async ensureNetwork (ctx, opts) {
      checkPrefix(ctx.prefix)
      // One network change at a time per supercloud (createHost calls in parallel may each ensure it).
      await withFileLock(join(driverDir(ctx), 'network'), async () => { await ensureNetworkLocked(ctx, opts) })
    },

    async destroyNetwork (ctx, opts) {
      checkPrefix(ctx.prefix)
      await withFileLock(join(driverDir(ctx), 'network'), async () => { await destroyNetworkLocked(ctx, opts) })
    },

    createHost: async (ctx, spec, opts) => await createHost(ctx, spec, driver.ensureNetwork, opts),
    describeHost: async (ctx, record) => await describeHost(ctx, record),
    destroyHost: async (ctx, record, opts) => { await destroyHost(ctx, record, opts) }
  }
  return driver
}
