/**
 * `supercloud cost`: what the spec's ec2 hosts cost per hour and each VM's share given the
 * oversubscription (drivers/ec2/pricing.ts), with VMs where the planner places them (and
 * where `migrate` moved them, once the supercloud exists). docs/pricing.md, docs/ec2.md.
 * Registered on the program by cli/main.ts.
 */
import { Option, type Command } from 'commander'
import { resolve } from 'node:path'
import { costPlan, formatCostPlan, loadPriceTable, type CostPlan, type PriceTable, type ShareBy } from '../../drivers/ec2/pricing.ts'
import { place } from '../planner/placement.ts'
import { loadSpec } from '../specfile/load.ts'
import type { Spec } from '../../core/spec.ts'
import type { CliHelpers } from './serve.ts'

export interface SpecCostOptions {
  /** How a host's price is split among its VMs. Default memory (allocated). */
  shareBy?: ShareBy
}

/** The cost plan of a spec (pure): every host, VMs placed by the planner (explicit `host:` first, then first fit). */
export function specCostPlan (spec: Spec, prices: PriceTable, opts: SpecCostOptions = {}): CostPlan {
  return costPlan({
    hosts: Object.values(spec.hosts),
    vms: Object.values(spec.vms),
    placement: place(spec),
    prices,
    ...(opts.shareBy !== undefined ? { shareBy: opts.shareBy } : {})
  })
}

/** The price table a spec uses: `pricesFile` (command line), else the spec's `prices:`, else the built-in table. */
export async function priceTableFor (spec: Spec, pricesFile?: string): Promise<PriceTable> {
  return await loadPriceTable(pricesFile ?? spec.prices)
}

/** The text `supercloud cost` prints: the cost table, or a line saying there is nothing to price. */
export function renderCost (plan: CostPlan): string {
  if (!plan.hosts.some(h => h.instanceType !== undefined)) {
    return `no ec2 hosts: nothing to price (${plan.hosts.length} host(s) of other drivers)\n`
  }
  return formatCostPlan(plan) + '\n'
}

export function registerCost (program: Command, helpers: CliHelpers): void {
  program.command('cost')
    .description('hourly cost of the ec2 hosts and of each VM given the oversubscription (no change made)')
    .option('--prices <file>', "price table (JSON, docs/pricing.md); default the spec's prices:, else the built-in table")
    .addOption(new Option('--share-by <what>', "split a host's price among its VMs by allocated memory or by vCPUs").choices(['memory', 'vcpus']).default('memory'))
    .option('--json', 'machine-readable output')
    .action(async (o: { prices?: string, shareBy: ShareBy, json?: boolean }, cmd: Command) => {
      // The placement in force (after `migrate`) when the supercloud exists, else the spec's.
      const effective = await helpers.withController(cmd, async (c, spec) => spec !== undefined ? c.effectiveSpec(spec) : undefined, true, () => undefined)
      const spec = effective ?? await loadSpec(resolve((cmd.optsWithGlobals() as { file: string }).file))
      const prices = await priceTableFor(spec, o.prices !== undefined ? resolve(o.prices) : undefined)
      const plan = specCostPlan(spec, prices, { shareBy: o.shareBy })
      process.stdout.write(o.json === true ? JSON.stringify(plan, null, 2) + '\n' : renderCost(plan))
    })
}
