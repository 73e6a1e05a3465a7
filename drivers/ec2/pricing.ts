/**
 * Cost view (pure, except loadPriceTable): hourly cost of the ec2 hosts, each VM's share
 * of its host, and what the same VMs would cost each on its own smallest fitting instance
 * (the comparison of seed 002 §4.3.2: 40 small VMs on one Cluster 4XL for 47% of the
 * price of 40 small instances). docs/pricing.md.
 */
import { readFile } from 'node:fs/promises'
import { projectPath } from '../../core/root.ts'
import { SupercloudError } from '../../core/errors.ts'
import type { HostSpec, VmSpec } from '../../core/spec.ts'

export const DEFAULT_PRICES_PATH = projectPath('drivers', 'ec2', 'prices.json')
const GIB = 1024 ** 3

export interface InstanceTypeInfo {
  vcpus: number
  memoryGiB: number
  previousGeneration?: boolean
}

export interface PriceTable {
  description?: string
  /** When the prices were taken, e.g. "2024-06". */
  asOf: string
  currency: string
  instanceTypes: Record<string, InstanceTypeInfo>
  /** region → instance type → price per hour. */
  prices: Record<string, Record<string, number>>
}

/** A price table file that cannot be used. */
export class PriceTableError extends SupercloudError {
  constructor (source: string, detail: string) {
    super('SC_PRICES_INVALID', `price table ${source}: ${detail}`, { exitCode: 2 })
  }
}

function isObj (x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

/** Checks the shape of a parsed price table. */
export function validatePriceTable (x: unknown, source: string): PriceTable {
  const bad = (d: string): PriceTableError => new PriceTableError(source, d)
  if (!isObj(x)) throw bad('must be a JSON object')
  if (typeof x.asOf !== 'string' || x.asOf === '') throw bad('asOf (when the prices were taken) must be a string')
  if (typeof x.currency !== 'string' || x.currency === '') throw bad('currency must be a string')
  if (!isObj(x.instanceTypes)) throw bad('instanceTypes must map instance types to { vcpus, memoryGiB }')
  for (const [t, info] of Object.entries(x.instanceTypes)) {
    if (!isObj(info) || typeof info.vcpus !== 'number' || !(info.vcpus > 0) || typeof info.memoryGiB !== 'number' || !(info.memoryGiB > 0)) {
      throw bad(`instanceTypes.${t} must be { vcpus: number > 0, memoryGiB: number > 0 }`)
    }
  }
  if (!isObj(x.prices)) throw bad('prices must map regions to { instanceType: price per hour }')
  for (const [region, table] of Object.entries(x.prices)) {
    if (!isObj(table)) throw bad(`prices.${region} must map instance types to prices`)
    for (const [t, p] of Object.entries(table)) {
      if (typeof p !== 'number' || !(p >= 0)) throw bad(`prices.${region}.${t} must be a number >= 0`)
      if (!(t in x.instanceTypes)) throw bad(`prices.${region}.${t}: ${t} is not in instanceTypes (add its vcpus and memoryGiB)`)
    }
  }
  return x as unknown as PriceTable
}

/** Reads a price table: the given file, else drivers/ec2/prices.json. */
export async function loadPriceTable (path?: string): Promise<PriceTable> {
  const file = path ?? DEFAULT_PRICES_PATH
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new PriceTableError(file, `cannot be read: ${err instanceof Error ? err.message : String(err)}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new PriceTableError(file, `is not JSON: ${err instanceof Error ? err.message : String(err)}`)
  }
  return validatePriceTable(parsed, file)
}

export function hourlyPrice (prices: PriceTable, region: string, instanceType: string): number | undefined {
  return prices.prices[region]?.[instanceType]
}

/** The cheapest instance type of a region with at least `cpus` vCPUs and `memoryBytes` of memory. */
export function smallestFitting (prices: PriceTable, region: string, cpus: number, memoryBytes: number): { instanceType: string, hourly: number } | undefined {
  let best: { instanceType: string, hourly: number } | undefined
  for (const [instanceType, hourly] of Object.entries(prices.prices[region] ?? {})) {
    const info = prices.instanceTypes[instanceType]
    if (info === undefined || info.vcpus < cpus || info.memoryGiB * GIB < memoryBytes) continue
    if (best === undefined || hourly < best.hourly || (hourly === best.hourly && instanceType < best.instanceType)) best = { instanceType, hourly }
  }
  return best
}

export type ShareBy = 'memory' | 'vcpus'

export interface CostPlanInput {
  hosts: HostSpec[]
  vms: VmSpec[]
  /** VM name → host name (planner/placement.ts `place`). */
  placement: Record<string, string>
  prices: PriceTable
  /** How a host's price is split among its VMs: by allocated memory (default) or by vCPUs. */
  shareBy?: ShareBy
  /** Current spot prices (`region/instanceType` → per hour, spot-prices.ts): spot hosts are priced at them. */
  spotPrices?: Record<string, number>
}

export interface HostCost {
  name: string
  region?: string
  instanceType?: string
  spot: boolean
  /** Price per hour (the spot price for a spot host when known, else on-demand); undefined when not priced (non-ec2 host, or no price in the table). */
  hourly?: number
  /** The on-demand price, when `hourly` is a spot price. */
  onDemandHourly?: number
  vms: string[]
  note?: string
}

export interface VmCost {
  name: string
  host: string
  /** Fraction of the host's price this VM carries (0..1). */
  share: number
  hourly?: number
  /** Its share of the host's on-demand price, when the host is priced at spot. */
  onDemandHourly?: number
  /** The smallest instance that would run this VM on its own (requested memory, vCPUs), in the host's region. */
  standalone?: { instanceType: string, hourly: number }
}

export interface CostPlan {
  currency: string
  asOf: string
  shareBy: ShareBy
  hosts: HostCost[]
  vms: VmCost[]
  /** Sum of the priced hosts. */
  totalHourly: number
  /** What the priced hosts would cost on demand, when some are priced at spot. */
  onDemandTotalHourly?: number
  /** Sum of the standalone prices of the VMs on priced hosts (when every one of them has one). */
  standaloneHourly?: number
  /** totalHourly / standaloneHourly: 0.47 means the supercloud costs 47% of one instance per VM. */
  ratio?: number
}

/** Hourly cost per host and per VM, and the comparison with one instance per VM. */
export function costPlan (input: CostPlanInput): CostPlan {
  const shareBy = input.shareBy ?? 'memory'
  const vmsByHost = new Map<string, VmSpec[]>()
  for (const vm of input.vms) {
    const h = input.placement[vm.name] ?? vm.host
    if (h === undefined) continue
    vmsByHost.set(h, [...(vmsByHost.get(h) ?? []), vm])
  }
  const hosts: HostCost[] = []
  const vms: VmCost[] = []
  let totalHourly = 0
  let onDemandTotal = 0
  let standaloneHourly = 0
  let standaloneComplete = true
  let pricedVms = 0
  for (const h of [...input.hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    const onHost = (vmsByHost.get(h.name) ?? []).sort((a, b) => a.name.localeCompare(b.name))
    const hc: HostCost = { name: h.name, spot: h.ec2?.spot === true, vms: onHost.map(v => v.name) }
    let hourly: number | undefined
    if (h.ec2 === undefined) {
      hc.note = `${h.driver} host: not priced`
    } else {
      hc.region = h.ec2.region
      hc.instanceType = h.ec2.instanceType
      hourly = hourlyPrice(input.prices, h.ec2.region, h.ec2.instanceType)
      const spot = hc.spot ? input.spotPrices?.[`${h.ec2.region}/${h.ec2.instanceType}`] : undefined
      if (spot !== undefined) {
        if (hourly !== undefined) { hc.onDemandHourly = hourly; hc.note = `spot price; on-demand ${money(hourly, input.prices.currency)}/h, saves ${((1 - spot / hourly) * 100).toFixed(0)}%` }
        hourly = spot
      } else if (hourly === undefined) hc.note = `no price for ${h.ec2.instanceType} in ${h.ec2.region} in the price table`
      else if (hc.spot) hc.note = 'spot: the on-demand price is shown, spot is usually lower'
    }
    if (hourly !== undefined) { hc.hourly = hourly; totalHourly += hourly; onDemandTotal += hc.onDemandHourly ?? hourly }
    hosts.push(hc)
    const weight = (v: VmSpec): number => shareBy === 'memory' ? v.memory.allocatedBytes : v.cpus
    const sum = onHost.reduce((a, v) => a + weight(v), 0)
    for (const v of onHost) {
      const share = sum > 0 ? weight(v) / sum : 1 / onHost.length
      const vc: VmCost = { name: v.name, host: h.name, share }
      if (hourly !== undefined) {
        vc.hourly = hourly * share
        if (hc.onDemandHourly !== undefined) vc.onDemandHourly = hc.onDemandHourly * share
        pricedVms++
        const alone = h.ec2 !== undefined ? smallestFitting(input.prices, h.ec2.region, v.cpus, v.memory.requestedBytes) : undefined
        if (alone !== undefined) { vc.standalone = alone; standaloneHourly += alone.hourly } else standaloneComplete = false
      }
      vms.push(vc)
    }
  }
  const plan: CostPlan = { currency: input.prices.currency, asOf: input.prices.asOf, shareBy, hosts, vms, totalHourly }
  if (hosts.some(h => h.onDemandHourly !== undefined)) plan.onDemandTotalHourly = onDemandTotal
  if (pricedVms > 0 && standaloneComplete && standaloneHourly > 0) {
    plan.standaloneHourly = standaloneHourly
    plan.ratio = pricedHostsTotalWithVms(hosts) / standaloneHourly
  }
  return plan
}

/** Price of the priced hosts that carry VMs (an empty host has no standalone counterpart). */
function pricedHostsTotalWithVms (hosts: HostCost[]): number {
  return hosts.filter(h => h.hourly !== undefined && h.vms.length > 0).reduce((a, h) => a + (h.hourly ?? 0), 0)
}

function money (x: number | undefined, currency: string): string {
  if (x === undefined) return '-'
  const digits = x !== 0 && Math.abs(x) < 0.1 ? 4 : 3
  return `${currency === 'USD' ? '$' : `${currency} `}${x.toFixed(digits)}`
}

/** A plain-text table of the cost plan (for `supercloud plan`). */
export function formatCostPlan (p: CostPlan): string {
  const lines: string[] = []
  lines.push(`Cost per hour (${p.currency}, on-demand prices as of ${p.asOf}${p.onDemandTotalHourly !== undefined ? ', spot hosts at current spot prices' : ''}; VM shares by ${p.shareBy === 'memory' ? 'allocated memory' : 'vCPUs'}):`)
  for (const h of p.hosts) {
    const what = h.instanceType !== undefined ? `${h.instanceType} ${h.region ?? ''}${h.spot ? ' spot' : ''}` : 'unpriced'
    lines.push(`  host ${h.name}  ${what}  ${money(h.hourly, p.currency)}/h  ${h.vms.length} VM(s)${h.note !== undefined ? `  (${h.note})` : ''}`)
  }
  for (const v of p.vms) {
    if (v.hourly === undefined) continue
    const alone = v.standalone !== undefined ? `  alone: ${v.standalone.instanceType} ${money(v.standalone.hourly, p.currency)}/h` : ''
    const od = v.onDemandHourly !== undefined ? `  (on-demand ${money(v.onDemandHourly, p.currency)}/h)` : ''
    lines.push(`  vm ${v.name} on ${v.host}  ${(v.share * 100).toFixed(1)}%  ${money(v.hourly, p.currency)}/h${od}${alone}`)
  }
  const od = p.onDemandTotalHourly
  lines.push(`  total ${money(p.totalHourly, p.currency)}/h${od !== undefined && od > 0 ? ` (on demand ${money(od, p.currency)}/h: spot saves ${money(od - p.totalHourly, p.currency)}/h, ${((1 - p.totalHourly / od) * 100).toFixed(0)}%)` : ''}`)
  if (p.ratio !== undefined && p.standaloneHourly !== undefined) {
    lines.push(`  one instance per VM would cost ${money(p.standaloneHourly, p.currency)}/h: the supercloud costs ${(p.ratio * 100).toFixed(0)}% of that`)
  }
  return lines.join('\n')
}
