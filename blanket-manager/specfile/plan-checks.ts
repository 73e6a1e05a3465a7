/**
 * Checks `plan` and `up` make once VMs are placed, of things that would otherwise fail only
 * while applying: a site-network NIC address outside the subnet of its host's site, and an
 * image file (qcow2, kernel, initrd) that does not exist. Reported as SpecError issues with
 * file, line, column and field, like the loader's (load.ts).
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { LineCounter, parseDocument } from 'yaml'
import { SpecError, type SpecIssue } from '../../core/errors.ts'
import { cidrContains, formatIpv4, networkOf, parseCidr } from '../../core/ipv4.ts'
import type { Spec } from '../../core/spec.ts'
import { formatPath, Locator, type SpecPath } from './locate.ts'

interface Problem { path: SpecPath, message: string }

/** The problems of `spec` with VMs on the hosts of `placement` (VM -> host); `exists` tells whether a file exists. */
export function planProblems (spec: Spec, placement: Record<string, string>, exists: (path: string) => boolean): Problem[] {
  const out: Problem[] = []
  const wired = new Set(spec.network.wires.flatMap(w => [w.a, w.b]).map(e => `${e.component}.${e.port}`))
  for (const vm of Object.values(spec.vms).sort((a, b) => a.name.localeCompare(b.name))) {
    const host = spec.hosts[placement[vm.name] ?? '']
    const site = host !== undefined ? spec.sites[host.site] : undefined
    const subnet = site?.subnet !== undefined ? parseCidr(site.subnet) : undefined
    if (site === undefined || subnet === undefined) continue
    vm.nics.forEach((n, i) => {
      if (n.address === undefined || wired.has(`${vm.name}.${n.name}`)) return
      const c = parseCidr(n.address)
      if (c === undefined || cidrContains(subnet, c.address)) return
      out.push({
        path: ['vms', vm.name, 'nics', i, 'address'],
        message: `${n.address} is outside the subnet ${formatIpv4(networkOf(subnet))}/${subnet.prefix} of site ${site.name}, where ${vm.name} runs (host ${host?.name ?? ''}); give an address in it, or none to have one allocated`
      })
    })
  }
  for (const img of Object.values(spec.images).sort((a, b) => a.name.localeCompare(b.name))) {
    const files: Array<[string, string]> = img.kind === 'qcow2'
      ? [['qcow2', img.path]]
      : img.kind === 'kernel' ? [['kernel', img.kernel], ...(img.initrd !== undefined ? [['initrd', img.initrd] as [string, string]] : [])] : []
    for (const [field, path] of files) {
      if (!exists(path)) out.push({ path: ['images', img.name, field], message: `${path}: no such file` })
    }
  }
  return out
}

/** Throws a SpecError (SC_SPEC_INVALID) naming file, line and field of each problem; nothing when there is none. */
export async function checkPlannable (spec: Spec, placement: Record<string, string>, exists: (path: string) => boolean = existsSync): Promise<void> {
  const problems = planProblems(spec, placement, exists)
  if (problems.length === 0) return
  let locator: Locator | undefined
  try {
    const lines = new LineCounter()
    locator = new Locator(parseDocument(await readFile(spec.file, 'utf8'), { lineCounter: lines }), lines)
  } catch { /* the file went away: fields without positions */ }
  const issues: SpecIssue[] = problems.map(p => {
    const pos = locator?.position(p.path) ?? { line: 0, column: 0 }
    return { file: spec.file, line: pos.line, column: pos.column, field: formatPath(p.path), message: p.message }
  })
  throw new SpecError(issues)
}
