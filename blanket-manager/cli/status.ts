/** Human-readable rendering of `supercloud status`. */
import type { StatusReport } from '../controller/index.ts'

function mib (b: number): string { return `${Math.round(b / 1048576)}M` }

function table (rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length))) ?? []
  return rows.map(r => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

export function renderStatus (s: StatusReport): string {
  let out = `supercloud ${s.name}${s.prefix !== undefined ? ` (prefix ${s.prefix})` : ''}\n\n`
  if (s.hosts.length === 0 && s.vms.length === 0) return out + 'nothing is up (run `supercloud up`)\n'
  out += table([['HOST', 'SITE', 'DRIVER', 'ADDRESS', 'STATUS', 'HEALTH', 'HYPERVISOR'],
    ...s.hosts.map(h => [h.name, h.site, h.driver, h.address ?? '-', h.status, h.health, h.accel === undefined ? '-' : h.accel === 'xen' ? 'xen' : `qemu/${h.accel}`])])
  out += '\n' + table([['VM', 'HOST', 'STATE', 'ADDRESSES', 'MEMORY (alloc/req)', 'VCPUS'],
    ...s.vms.map(v => [v.name, v.host, v.state === 'unknown' ? v.status : v.state, v.addresses.join(',') || '-',
      v.memory !== undefined ? `${mib(v.memory.allocatedBytes)}/${mib(v.memory.requestedBytes)}` : '-', String(v.cpus ?? '-')])])
  for (const v of s.vms) if (v.error !== undefined) out += `\n${v.name}: ${v.error}\n`
  return out
}
