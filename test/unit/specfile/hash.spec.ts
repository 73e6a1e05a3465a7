import t from 'tap'
import { canonicalJson, hashHost, hashVm, stableHash } from '../../../blanket-manager/specfile/hash.ts'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import type { HostSpec, VmSpec } from '../../../core/spec.ts'

const vm: VmSpec = {
  name: 'web1', image: 'tiny', host: 'host-a', cpus: 1,
  memory: { requestedBytes: 128 * 2 ** 20, allocatedBytes: 128 * 2 ** 20 },
  disks: [{ name: 'data', sizeBytes: 2 ** 26 }],
  nics: [{ name: 'eth0', address: '198.18.1.101/24' }]
}

t.test('key order does not change the hash', async t => {
  const reordered: VmSpec = {
    nics: [{ address: '198.18.1.101/24', name: 'eth0' }],
    disks: [{ sizeBytes: 2 ** 26, name: 'data' }],
    memory: { allocatedBytes: 128 * 2 ** 20, requestedBytes: 128 * 2 ** 20 },
    cpus: 1, host: 'host-a', image: 'tiny', name: 'web1'
  }
  t.equal(hashVm(reordered), hashVm(vm))
  t.match(hashVm(vm), /^[0-9a-f]{64}$/)
  t.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: null } }), '{"a":{"c":null,"d":[2,1]},"b":1}')
})

t.test('undefined properties equal absent ones', async t => {
  t.equal(hashVm({ ...vm, host: undefined }), hashVm((({ host: _h, ...rest }) => rest)(vm) as VmSpec))
})

t.test('any change in content changes the hash', async t => {
  const variants: VmSpec[] = [
    { ...vm, cpus: 2 },
    { ...vm, memory: { ...vm.memory, allocatedBytes: 64 * 2 ** 20 } },
    { ...vm, disks: [] },
    { ...vm, nics: [{ name: 'eth0' }] },
    { ...vm, host: 'host-b' },
    { ...vm, disks: [...vm.disks, { name: 'more', sizeBytes: 1 }].reverse() }
  ]
  const hashes = new Set([hashVm(vm), ...variants.map(hashVm)])
  t.equal(hashes.size, variants.length + 1)
})

t.test('hosts and VMs hash into different spaces; spec files with the same content hash the same', async t => {
  const a = parseSpec('sites: { s: { subnet: 198.18.1.0/24 } }\nhosts:\n  h: { site: s, cpus: 2, memory: 2G }\n', '/x/a.yaml')
  const b = parseSpec('hosts:\n  h: { memory: 2048M, site: s }\nsites:\n  s: { subnet: 198.18.1.0/24 }\n', '/y/b.yaml')
  t.equal(hashHost(a.hosts.h as HostSpec), hashHost(b.hosts.h as HostSpec))
  t.not(stableHash({ kind: 'vm', spec: {} }), stableHash({ kind: 'host', spec: {} }))
})
