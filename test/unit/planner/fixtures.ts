import type { Spec, VmSpec, HostSpec } from '../../../core/spec.ts'
import { hostHash, networkHash, plan, vmHash } from '../../../blanket-manager/planner/plan.ts'
import type { StateSnapshot } from '../../../blanket-manager/state/store.ts'

export const empty: StateSnapshot = { networks: [], hosts: [], vms: [] }

/** The state `up` leaves behind after applying a plan for `s`. */
export function applied (s: Spec): StateSnapshot {
  const p = plan(s, empty, 'scx')
  return {
    networks: [{ driver: 'local', specHash: networkHash(s, 'local'), status: 'ready' }],
    hosts: Object.values(s.hosts).map(h => ({ name: h.name, site: h.site, driver: h.driver, specHash: hostHash(h), status: 'ready' as const, bootstrapped: true, accel: 'kvm' })),
    vms: Object.values(p.resolved).map(r => ({
      name: r.spec.name,
      host: r.host,
      specHash: vmHash(r),
      status: 'ready' as const,
      record: { host: r.host, nics: r.nics, memory: r.spec.memory, cpus: r.spec.cpus, image: r.spec.image, disks: r.spec.disks }
    }))
  }
}

const M = 1024 * 1024

export function host (name: string, site: string, memMiB = 1024, cpus = 2): HostSpec {
  return { name, site, driver: 'local', cpus, memoryBytes: memMiB * M, hypervisor: { backend: 'qemu', accel: 'tcg' } }
}

export function vm (name: string, opts: Partial<VmSpec> & { mem?: number, alloc?: number } = {}): VmSpec {
  const mem = (opts.mem ?? 128) * M
  return {
    name,
    image: opts.image ?? 'tiny',
    cpus: opts.cpus ?? 1,
    memory: { requestedBytes: mem, allocatedBytes: (opts.alloc ?? opts.mem ?? 128) * M },
    disks: opts.disks ?? [],
    nics: opts.nics ?? [{ name: 'eth0' }],
    ...(opts.host !== undefined ? { host: opts.host } : {})
  }
}

export function spec (hosts: HostSpec[], vms: VmSpec[]): Spec {
  return {
    file: '/tmp/supercloud.yaml',
    name: 'test',
    sites: { a: { name: 'a', subnet: '198.18.1.0/24' }, b: { name: 'b', subnet: '198.18.2.0/24' } },
    wan: { delayMs: 0 },
    hosts: Object.fromEntries(hosts.map(h => [h.name, h])),
    images: { tiny: { name: 'tiny', kind: 'builtin', builtin: 'tiny' } },
    network: { port: 4789, switches: {}, wires: [], extenders: {} },
    vms: Object.fromEntries(vms.map(v => [v.name, v]))
  }
}
