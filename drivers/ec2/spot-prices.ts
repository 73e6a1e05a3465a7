/**
 * Current spot prices of the spec's spot hosts, from EC2 (DescribeSpotPriceHistory: Linux/UNIX,
 * the latest price of each instance type, the lowest over the region's zones unless the host
 * names a zone). What `supercloud cost` prices spot hosts at (pricing.ts `spotPrices`).
 */
import { DescribeSpotPriceHistoryCommand, EC2Client } from '@aws-sdk/client-ec2'
import type { HostSpec } from '../../core/spec.ts'
import { call, createEc2Env, endpointFor } from './client.ts'

/** `region/instanceType` → USD per hour. */
export type SpotPrices = Record<string, number>

export function spotKey (region: string, instanceType: string): string { return `${region}/${instanceType}` }

export interface SpotPriceOptions {
  /** Makes the client of a region (tests); default the SDK's with the default credential chain. */
  clientFactory?: (region: string, endpoint: string | undefined) => EC2Client
  now?: Date
}

/** The latest spot price of every (region, instance type) of the spot hosts. */
export async function fetchSpotPrices (hosts: HostSpec[], opts: SpotPriceOptions = {}): Promise<SpotPrices> {
  const env = createEc2Env({})
  const groups = new Map<string, { region: string, endpoint: string | undefined, types: Set<string> }>()
  for (const h of hosts) {
    const o = h.ec2
    if (o?.spot !== true) continue
    const endpoint = endpointFor(env, o)
    const k = `${o.region} ${endpoint ?? ''}`
    const g = groups.get(k) ?? { region: o.region, endpoint, types: new Set<string>() }
    g.types.add(o.instanceType)
    groups.set(k, g)
  }
  const out: SpotPrices = {}
  for (const g of groups.values()) {
    const client = opts.clientFactory?.(g.region, g.endpoint) ?? new EC2Client({ region: g.region, ...(g.endpoint !== undefined ? { endpoint: g.endpoint } : {}) })
    try {
      const r = await call(client, g.region, 'reading spot prices', async c => await c.send(new DescribeSpotPriceHistoryCommand({
        InstanceTypes: [...g.types] as never, ProductDescriptions: ['Linux/UNIX'], StartTime: opts.now ?? new Date()
      })))
      const latest = new Map<string, { at: number, price: number }>()
      for (const p of r.SpotPriceHistory ?? []) {
        const price = Number(p.SpotPrice)
        if (p.InstanceType === undefined || !Number.isFinite(price)) continue
        const at = p.Timestamp?.getTime() ?? 0
        const key = spotKey(g.region, p.InstanceType)
        const cur = latest.get(key)
        // The newest price; of equally new ones (one per zone), the lowest.
        if (cur === undefined || at > cur.at || (at === cur.at && price < cur.price)) latest.set(key, { at, price })
      }
      for (const [k, v] of latest) out[k] = v.price
    } finally {
      if (opts.clientFactory === undefined) client.destroy()
    }
  }
  return out
}
