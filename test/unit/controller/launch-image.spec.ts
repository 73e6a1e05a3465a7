/**
 * Which kernel a builtin-image VM boots (blanket-manager/controller/launch.ts): on a QEMU host the
 * uncompressed one (direct PVH boot), sent gzip'ed and unpacked on the host, and the same on a Xen
 * host (its domain builder loads the ELF without decompressing a bzImage in the dom0).
 */
import t from 'tap'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { Bench } from './mem.ts'

function spec (h2: string): ReturnType<typeof parseSpec> {
  return parseSpec([
    'name: unit',
    'sites:',
    '  s1: { subnet: 198.18.0.0/24 }',
    'hosts:',
    '  h1: { site: s1, memory: 1G, hypervisor: { accel: tcg } }',
    `  h2: { site: s1, memory: 1G, hypervisor: ${h2} }`,
    'images:',
    '  tiny: { builtin: tiny }',
    'vms:',
    '  a: { image: tiny, host: h1, memory: 128M }',
    '  b: { image: tiny, host: h2, memory: 128M }',
    ''
  ].join('\n'), join(tmpdir(), 'unit', 'supercloud.yaml'))
}

t.test('QEMU and Xen hosts both boot the unpacked ELF kernel', async t => {
  const bench = new Bench()
  t.teardown(() => { bench.cleanup() })
  await bench.controller().up(spec('{ backend: xen }'), { yes: true })
  const a = bench.cloud.host('h1').images.get('a')
  const b = bench.cloud.host('h2').images.get('b')
  t.match(a, { kind: 'kernel', kernel: '/mem/h1/images/tiny0/vmlinux', initrd: '/mem/h1/images/tiny0/initrd.img' }, 'QEMU: vmlinux, unpacked from vmlinux.gz on the host')
  t.match(b, { kind: 'kernel', kernel: '/mem/h2/images/tiny0/vmlinux', initrd: '/mem/h2/images/tiny0/initrd.img' }, 'Xen: the same ELF kernel')
})

t.test('two QEMU hosts: both get the ELF kernel', async t => {
  const bench = new Bench()
  t.teardown(() => { bench.cleanup() })
  await bench.controller().up(spec('{ accel: tcg }'), { yes: true })
  t.equal((bench.cloud.host('h2').images.get('b') as { kernel: string }).kernel, '/mem/h2/images/tiny0/vmlinux')
})
