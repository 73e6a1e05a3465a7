/** Host addresses of the local driver: allocated per site (plan.ts rules) and remembered in <dir>/local/addresses.json. */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { DriverContext } from '../cloud.ts'
import type { HostSpec } from '../../core/spec.ts'
import { allocateHostAddress, type SitePlan } from './plan.ts'
import { driverDir, readJson, withFileLock } from './files.ts'

type Assignments = Record<string, Record<string, string>>

export async function hostAddress (ctx: DriverContext, sp: SitePlan, spec: HostSpec): Promise<string> {
  const file = join(driverDir(ctx), 'addresses.json')
  return await withFileLock(file, async () => {
    const all = await readJson<Assignments>(file, {})
    const assigned = all[sp.site] ?? {}
    const siteHosts = Object.values(ctx.hosts ?? {})
      .filter(h => h.site === spec.site && h.driver === 'local')
      .map(h => h.local?.address !== undefined ? { name: h.name, explicit: h.local.address } : { name: h.name })
    const req = { subnet: sp.subnet, gateway: sp.gateway, host: spec.name, siteHosts, assigned }
    const address = allocateHostAddress(spec.local?.address !== undefined ? { ...req, explicit: spec.local.address } : req)
    if (assigned[spec.name] !== address) {
      all[sp.site] = { ...assigned, [spec.name]: address }
      await mkdir(driverDir(ctx), { recursive: true })
      await writeFile(file, JSON.stringify(all, null, 2) + '\n')
    }
    return address
  })
}

export async function forgetHostAddress (ctx: DriverContext, site: string, host: string): Promise<void> {
  const file = join(driverDir(ctx), 'addresses.json')
  await withFileLock(file, async () => {
    const all = await readJson<Assignments>(file, {})
    if (all[site]?.[host] === undefined) return
    delete all[site][host]
    await writeFile(file, JSON.stringify(all, null, 2) + '\n')
  })
}
