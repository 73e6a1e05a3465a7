/**
 * The checks `plan` and `up` make once VMs are placed (specfile/plan-checks.ts): a site-network
 * NIC address outside its site's subnet and an image file that does not exist are spec errors
 * naming file, line, column and field, before anything is changed.
 */
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SpecError } from '../../../core/errors.ts'
import { loadSpec } from '../../../blanket-manager/specfile/load.ts'
import { checkPlannable } from '../../../blanket-manager/specfile/plan-checks.ts'
import { place } from '../../../blanket-manager/planner/placement.ts'

const dir = mkdtempSync(join(tmpdir(), 'sc-planchecks-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
const disk = join(dir, 'deb.qcow2')
writeFileSync(disk, 'not really a qcow2, but it exists')

function write (vmLines: string[], images: string[] = ['  tiny: { builtin: tiny }']): string {
  const file = join(dir, 'supercloud.yaml')
  writeFileSync(file, [
    'name: checks',
    'sites:',
    '  a: { subnet: 198.18.93.0/24 }',
    'hosts:',
    '  h1: { site: a, memory: 1G, hypervisor: { accel: tcg } }',
    'images:',
    ...images,
    'vms:',
    ...vmLines,
    ''
  ].join('\n'))
  return file
}

async function problems (file: string): Promise<string[]> {
  const spec = await loadSpec(file)
  try {
    await checkPlannable(spec, place(spec))
    return []
  } catch (err) {
    if (!(err instanceof SpecError)) throw err
    return err.message.split('\n')
  }
}

t.test('a site-network NIC address outside the site subnet: file, line, column, field', async t => {
  const file = write(['  web1:', '    image: tiny', '    memory: 64M', '    nics:', '      - { name: eth0, address: 10.0.0.5/24 }'])
  const p = await problems(file)
  t.equal(p.length, 1)
  t.match(p[0], `${file}:13:`)
  t.match(p[0], /: vms\.web1\.nics\[0\]\.address: 10\.0\.0\.5\/24 is outside the subnet 198\.18\.93\.0\/24 of site a, where web1 runs \(host h1\)/)
})

t.test('an address inside the subnet and an allocated one are fine', async t => {
  t.same(await problems(write(['  web1: { image: tiny, memory: 64M, nics: [ { name: eth0, address: 198.18.93.7/24 } ] }', '  web2: { image: tiny, memory: 64M }'])), [])
})

t.test('a qcow2 (or kernel) image whose file does not exist: its line and field', async t => {
  const file = write(['  web1: { image: deb, memory: 64M }'], ['  deb: { qcow2: ./missing.qcow2 }', '  ok: { qcow2: ./deb.qcow2 }', '  k: { kernel: /nonexistent/vmlinuz }'])
  const p = await problems(file)
  t.equal(p.length, 2)
  t.match(p[0], new RegExp(`^${file}:7:\\d+: images\\.deb\\.qcow2: ${join(dir, 'missing.qcow2')}: no such file$`))
  t.match(p[1], /:9:\d+: images\.k\.kernel: \/nonexistent\/vmlinuz: no such file$/)
})
