/**
 * The `ec2` cloud driver: hosts are EC2 instances launched from a stock Debian/Ubuntu AMI
 * with the host bootstrap as user-data (drivers/host-bootstrap/cloud-init.ts). Per supercloud and
 * region: one key pair (the supercloud's public key) and one security group (SSH from the
 * operator only; VXLAN, extender and migration ports only from the group itself). Every
 * resource carries the tags supercloud=<name>, supercloud:prefix=<prefix> (and
 * supercloud:host=<host> on instances), so `down` finds exactly what `up` made, even
 * instances whose ids were never recorded. docs/ec2.md.
 */
import type { CloudDriver } from '../cloud.ts'
import { TAG_HOST } from './plan.ts'
import { clientFor, createEc2Env, type Ec2DriverOptions } from './client.ts'
import { knownRegions, specsByRegion } from './regions.ts'
import { destroyRegion, ensureRegion } from './network.ts'
import { describeHost, destroyHost, findInstances, terminate } from './instances.ts'
import { createHost } from './launch.ts'

export { spotInterruptionEvent, SPOT_NOTICE_COMMAND, type SpotInterruptionEvent } from './plan.ts'
export { Ec2Error } from './errors.ts'
export { DEFAULT_CHECKIP_URL } from './network.ts'
export type { Ec2DriverOptions } from './client.ts'
export type { Ec2HostData } from './record.ts'

/**
 * The driver: one Ec2Env (options, clients, region locks) shared by the modules doing the work:
 * client.ts, regions.ts, network.ts (key pair, security group), launch.ts, instances.ts.
 */
export function createEc2Driver (dopts: Ec2DriverOptions = {}): CloudDriver {
  const env = createEc2Env(dopts)
  return {
    name: 'ec2',

    async ensureNetwork (ctx, opts) {
      for (const [region, specs] of specsByRegion(ctx)) await ensureRegion(env, ctx, region, specs, opts)
    },

    async destroyNetwork (ctx, opts) {
      for (const [region, endpoint] of await knownRegions(env, ctx)) {
        const c = clientFor(env, region, endpoint)
        // Instances first: a partial `up` may have left some whose ids were never recorded.
        const left = await findInstances(c, region, ctx)
        for (const inst of left) {
          const host = inst.Tags?.find(t => t.Key === TAG_HOST)?.Value ?? inst.InstanceId ?? '?'
          if (inst.InstanceId !== undefined) await terminate(env, c, region, host, [inst.InstanceId], opts)
        }
        await destroyRegion(env, ctx, region, c, opts)
      }
    },

    createHost: async (ctx, spec, opts) => await createHost(env, ctx, spec, opts),
    describeHost: async (ctx, record) => await describeHost(env, ctx, record),
    destroyHost: async (ctx, record, opts) => { await destroyHost(env, ctx, record, opts) }
  }
}
