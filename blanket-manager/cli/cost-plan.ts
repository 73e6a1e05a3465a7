/**
 * What `supercloud cost` computes and prints (pure, except reading the price table): the cost
 * plan of a spec with VMs where the planner places them (drivers/ec2/pricing.ts). Apart from
 * cli/cost.ts, which registers the command, so the CLI's start loads neither the planner nor
 * the price table: the command loads this module when it runs.
 */
import { costPlan, formatCostPlan, loadPriceTable, type CostPlan, type PriceTable, type ShareBy } from '../../drivers/ec2/pricing.ts'
import { place } from '../planner/placement.ts'
import type { Spec } from '../../core/spec.ts'

export interface SpecCostOptions {
  /** How a host's price is split among its VMs. Default memory (allocated). */
  shareBy?: ShareBy
  /** Current spot prices (drivers/ec2/spot-prices.ts): spot hosts are priced at them. */
  spotPrices?: Record<string, number>
}

/** The cost plan of a spec (pure): every host, VMs placed by the planner (explicit `host:` first, then first fit). */
export function specCostPlan (spec: Spec, prices: PriceTable, opts: SpecCostOptions = {}): CostPlan {
  return costPlan({
    hosts: Object.values(spec.hosts),
    vms: Object.values(spec.vms),
    placement: place(spec),
    prices,
    ...(opts.shareBy !== undefined ? { shareBy: opts.shareBy } : {}),
    ...(opts.spotPrices !== undefined ? { spotPrices: opts.spotPrices } : {})
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
