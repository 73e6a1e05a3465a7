/**
 * The spot market of the fake EC2 server: DescribeSpotPriceHistory (prices a fixed share of
 * the built-in on-demand table, or what a test set), and the control calls that reclaim a
 * spot instance as EC2 does: an interruption notice in its metadata (`spot/instance-action`,
 * with a rebalance recommendation before it), then termination at the stated time (its host
 * namespace and every process in it go away).
 */
import { readFileSync } from 'node:fs'
import { DEFAULT_PRICES_PATH, validatePriceTable, type PriceTable } from '../pricing.ts'
import { itemSet, list, obj, str, strList, type QueryObject, type XmlNode } from './protocol.ts'
import type { FakeEc2State, FakeInstance } from './state.ts'
import { SPOT_TERMINATION, terminate } from './instance-host.ts'

/** Spot prices of the fake: this share of on-demand, unless a test set one. */
export const SPOT_SHARE = 0.3

let onDemand: PriceTable | undefined
function onDemandTable (): PriceTable {
  onDemand ??= validatePriceTable(JSON.parse(readFileSync(DEFAULT_PRICES_PATH, 'utf8')), DEFAULT_PRICES_PATH)
  return onDemand
}

export function spotPriceOf (s: FakeEc2State, region: string, instanceType: string): number | undefined {
  const set = s.spotPrices.get(`${region}/${instanceType}`)
  if (set !== undefined) return set
  const od = onDemandTable().prices[region]?.[instanceType]
  return od !== undefined ? Math.round(od * SPOT_SHARE * 1e6) / 1e6 : undefined
}

/** DescribeSpotPriceHistory: the current price of each asked type (Linux/UNIX) in each zone of the region, newest first. */
export function describeSpotPriceHistory (s: FakeEc2State, region: string, q: QueryObject): XmlNode[] {
  const asked = strList(q.InstanceType)
  const types = asked.length > 0 ? asked : Object.keys(onDemandTable().prices[region] ?? {})
  const products = strList(q.ProductDescription)
  const az = str(q.AvailabilityZone)
  const zones = az !== undefined ? [az] : [`${region}a`]
  const filterTypes = list(q.Filter).filter(f => str(obj(f).Name) === 'instance-type').flatMap(f => strList(obj(f).Value))
  const rows: XmlNode[][] = []
  if (products.length === 0 || products.includes('Linux/UNIX') || products.includes('Linux/UNIX (Amazon VPC)')) {
    for (const t of types) {
      if (filterTypes.length > 0 && !filterTypes.includes(t)) continue
      const p = spotPriceOf(s, region, t)
      if (p === undefined) continue
      for (const z of zones) rows.push([['instanceType', t], ['productDescription', 'Linux/UNIX'], ['spotPrice', p.toFixed(6)], ['timestamp', new Date().toISOString()], ['availabilityZone', z]])
    }
  }
  return [itemSet('spotPriceHistorySet', rows), ['nextToken', '']]
}

function liveSpot (s: FakeEc2State, instanceId: string): FakeInstance {
  const inst = s.instancesById.get(instanceId)
  if (inst === undefined) throw new Error(`fake EC2 server: no instance ${instanceId}`)
  if (!inst.spot) throw new Error(`fake EC2 server: ${instanceId} is an on-demand instance; only spot instances are interrupted`)
  if (inst.state !== 'running') throw new Error(`fake EC2 server: ${instanceId} is ${inst.state}, not running`)
  return inst
}

/** A rebalance recommendation in the instance's metadata (no termination follows by itself). */
export function recommendRebalance (s: FakeEc2State, instanceId: string, now = new Date()): void {
  liveSpot(s, instanceId).rebalance = { noticeTime: now.toISOString().replace(/\.\d+Z$/, 'Z') }
}

/**
 * Reclaims a spot instance: the interruption notice (and a rebalance recommendation, as EC2
 * sends one no later) in its metadata now, termination `noticeSeconds` later. Returns the time.
 */
export function interrupt (s: FakeEc2State, instanceId: string, noticeSeconds = 120): string {
  const inst = liveSpot(s, instanceId)
  const now = Date.now()
  const time = new Date(now + noticeSeconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z')
  // EC2's times are whole seconds: terminate at the stated second, not before.
  const at = Date.parse(time)
  inst.interruption = { action: 'terminate', time }
  inst.rebalance ??= { noticeTime: new Date(now).toISOString().replace(/\.\d+Z$/, 'Z') }
  const rt = s.runtime.get(inst.id)
  if (rt !== undefined) {
    if (rt.reclaim !== undefined) clearTimeout(rt.reclaim)
    rt.reclaim = setTimeout(() => {
      void terminate(s, inst, SPOT_TERMINATION).catch(err => { process.emitWarning(`fake EC2 server: reclaim ${inst.id}: ${String(err)}`) })
    }, Math.max(0, at - Date.now()))
  }
  return time
}
