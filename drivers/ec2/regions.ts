/**
 * Which regions the EC2 driver works in: the ones of the spec's hosts, and the ones remembered
 * in <dir>/ec2/regions.json (written before anything is made in a region, so `down` finds
 * resources of hosts since removed from the spec).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext, HostRecord } from '../cloud.ts'
import type { Ec2HostOptions } from '../../core/spec.ts'
import { endpointFor, withRegionLock, type Ec2Env } from './client.ts'
import type { Ec2HostData } from './record.ts'

/** Regions (and endpoints) where this supercloud may have resources; written before anything is made there. */
type RegionFile = Record<string, { endpoint?: string }>

function regionFile (ctx: DriverContext): string {
  return join(ctx.dir, 'ec2', 'regions.json')
}

async function readRegions (ctx: DriverContext): Promise<RegionFile> {
  try { return JSON.parse(await readFile(regionFile(ctx), 'utf8')) as RegionFile } catch { return {} }
}

export async function rememberRegion (env: Ec2Env, ctx: DriverContext, region: string, endpoint: string | undefined): Promise<void> {
  await withRegionLock(env, `file ${ctx.dir}`, async () => {
    const all = await readRegions(ctx)
    if (region in all && all[region]?.endpoint === endpoint) return
    all[region] = endpoint !== undefined ? { endpoint } : {}
    await mkdir(join(ctx.dir, 'ec2'), { recursive: true })
    await writeFile(regionFile(ctx), JSON.stringify(all, null, 2) + '\n')
  })
}

export async function forgetRegion (env: Ec2Env, ctx: DriverContext, region: string): Promise<void> {
  await withRegionLock(env, `file ${ctx.dir}`, async () => {
    const all = await readRegions(ctx)
    delete all[region]
    if (Object.keys(all).length === 0) await rm(join(ctx.dir, 'ec2'), { recursive: true, force: true })
    else await writeFile(regionFile(ctx), JSON.stringify(all, null, 2) + '\n')
  })
}

/** ec2 hosts of the context by region. */
export function specsByRegion (ctx: DriverContext): Map<string, Ec2HostOptions[]> {
  const m = new Map<string, Ec2HostOptions[]>()
  for (const h of Object.values(ctx.hosts ?? {})) {
    if (h.driver !== 'ec2' || h.ec2 === undefined) continue
    m.set(h.ec2.region, [...(m.get(h.ec2.region) ?? []), h.ec2])
  }
  return m
}

/** All regions (with endpoint) where this supercloud may have resources. */
export async function knownRegions (env: Ec2Env, ctx: DriverContext): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>()
  for (const [r, v] of Object.entries(await readRegions(ctx))) out.set(r, v.endpoint ?? endpointFor(env, undefined))
  for (const [r, specs] of specsByRegion(ctx)) if (!out.has(r)) out.set(r, endpointFor(env, specs[0]))
  return out
}

/** Where a record's instance lives: its own data, else the spec, else every known region. */
export async function regionsOfRecord (env: Ec2Env, ctx: DriverContext, record: HostRecord): Promise<Array<[string, string | undefined]>> {
  const d = record.driverData as Partial<Ec2HostData>
  if (d.region !== undefined) return [[d.region, d.endpoint ?? endpointFor(env, undefined)]]
  const spec = ctx.hosts?.[record.name]?.ec2
  if (spec !== undefined) return [[spec.region, endpointFor(env, spec)]]
  return [...await knownRegions(env, ctx)]
}
