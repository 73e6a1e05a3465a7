/**
 * `supercloud cost`: what the spec's ec2 hosts cost per hour and each VM's share given the
 * oversubscription (drivers/ec2/pricing.ts), spot hosts at EC2's current spot prices
 * (drivers/ec2/spot-prices.ts) with the saving against on-demand, with VMs where the planner places them (and
 * where `migrate` moved them, once the supercloud exists). docs/pricing.md, docs/ec2.md.
 * Registered on the program by cli/main.ts; the computation is in cost-plan.ts, loaded when
 * the command runs.
 */
import { Option, type Command } from 'commander'
import { resolve } from 'node:path'
import type { ShareBy } from '../../drivers/ec2/pricing.ts'
import type { CliHelpers } from './serve.ts'

export function registerCost (program: Command, helpers: CliHelpers): void {
  program.command('cost')
    .description('hourly cost of the ec2 hosts and of each VM given the oversubscription (no change made)')
    .option('--prices <file>', "price table (JSON, docs/pricing.md); default the spec's prices:, else the built-in table")
    .addOption(new Option('--share-by <what>', "split a host's price among its VMs by allocated memory or by vCPUs").choices(['memory', 'vcpus']).default('memory'))
    .option('--no-spot-prices', 'price spot hosts on demand instead of asking EC2 for current spot prices (DescribeSpotPriceHistory, needs credentials)')
    .option('--json', 'machine-readable output')
    .action(async (o: { prices?: string, shareBy: ShareBy, spotPrices: boolean, json?: boolean }, cmd: Command) => {
      const { priceTableFor, renderCost, specCostPlan } = await import('./cost-plan.ts')
      // The placement in force (after `migrate`) when the supercloud exists, else the spec's.
      const effective = await helpers.withController(cmd, async (c, spec) => spec !== undefined ? c.effectiveSpec(spec) : undefined, true, () => undefined)
      const spec = effective ?? await (await import('../specfile/load.ts')).loadSpec(resolve((cmd.optsWithGlobals() as { file: string }).file))
      const prices = await priceTableFor(spec, o.prices !== undefined ? resolve(o.prices) : undefined)
      let spotPrices: Record<string, number> | undefined
      if (o.spotPrices && Object.values(spec.hosts).some(h => h.ec2?.spot === true)) {
        const { fetchSpotPrices } = await import('../../drivers/ec2/spot-prices.ts')
        try {
          spotPrices = await fetchSpotPrices(Object.values(spec.hosts))
        } catch (err) {
          process.stderr.write(`cost: spot prices unavailable (${(err as Error).message}); spot hosts are priced on demand\n`)
        }
      }
      const plan = specCostPlan(spec, prices, { shareBy: o.shareBy, ...(spotPrices !== undefined ? { spotPrices } : {}) })
      process.stdout.write(o.json === true ? JSON.stringify(plan, null, 2) + '\n' : renderCost(plan))
    })
}
