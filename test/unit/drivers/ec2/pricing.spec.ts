import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { costPlan, formatCostPlan, loadPriceTable, smallestFitting, validatePriceTable, type PriceTable } from '../../../../drivers/ec2/pricing.ts'
import type { HostSpec, VmSpec } from '../../../../core/spec.ts'

const GIB = 1024 ** 3

/** Seed 002, Table 4.2 (EC2, 2011): Small 1 ECU 1.7 GB $0.085/h; Cluster 4XL 33.5 ECU 23 GB $1.60/h. */
const seedPrices: PriceTable = {
  asOf: '2011 (seed 002, Table 4.2)',
  currency: 'USD',
  instanceTypes: { 'm1.small': { vcpus: 1, memoryGiB: 1.7 }, 'cc1.4xlarge': { vcpus: 16, memoryGiB: 23 } },
  prices: { 'us-east-1': { 'm1.small': 0.085, 'cc1.4xlarge': 1.60 } }
}

function ec2 (name: string, instanceType: string, region = 'us-east-1'): HostSpec {
  return { name, site: 'aws', driver: 'ec2', cpus: 16, memoryBytes: 23 * GIB, hypervisor: { backend: 'qemu', accel: 'auto' }, ec2: { region, ami: 'ami-0123456789abcdef0', instanceType } }
}

function vm (name: string, cpus: number, requested: number, allocated: number): VmSpec {
  return { name, image: 'tiny', cpus, memory: { requestedBytes: requested, allocatedBytes: allocated }, disks: [], nics: [] }
}

function smallVms (n: number): VmSpec[] {
  return Array.from({ length: n }, (_, i) => vm(`small${i}`, 1, 1.7 * GIB, Math.floor(23 * GIB / n)))
}

t.test('seed case: 40 small VMs on one Cluster 4XL cost about 47% of 40 small instances', async t => {
  const vms = smallVms(40)
  const p = costPlan({ hosts: [ec2('c4xl', 'cc1.4xlarge')], vms, placement: Object.fromEntries(vms.map(v => [v.name, 'c4xl'])), prices: seedPrices })
  t.equal(p.totalHourly, 1.60)
  t.equal(p.vms.length, 40)
  t.ok(p.vms.every(v => Math.abs((v.hourly ?? 0) - 0.04) < 1e-9), 'each VM costs $0.04/h')
  t.ok(p.vms.every(v => v.standalone?.instanceType === 'm1.small' && v.standalone.hourly === 0.085), 'alone, each would be a small instance at $0.085/h')
  t.equal(p.standaloneHourly?.toFixed(2), '3.40')
  t.equal(Math.round((p.ratio ?? 0) * 100), 47, 'the supercloud costs 47% of the price per VM')
  t.match(formatCostPlan(p), /costs 47% of that/)
})

t.test('seed: the price per VM at 1, 10, 20, 30, 40 VMs', async t => {
  const per = [1, 10, 20, 30, 40].map(n => {
    const vms = smallVms(n)
    return costPlan({ hosts: [ec2('c4xl', 'cc1.4xlarge')], vms, placement: Object.fromEntries(vms.map(v => [v.name, 'c4xl'])), prices: seedPrices }).vms[0]?.hourly?.toFixed(2)
  })
  t.same(per, ['1.60', '0.16', '0.08', '0.05', '0.04'], '$1.60, $0.16, $0.08, $0.053, $0.04 as in §4.3.2')
})

t.test('shares follow allocated memory (or vCPUs)', async t => {
  const vms = [vm('big', 1, 4 * GIB, 3 * GIB), vm('little', 3, 1 * GIB, 1 * GIB)]
  const placement = { big: 'h', little: 'h' }
  const byMem = costPlan({ hosts: [ec2('h', 'cc1.4xlarge')], vms, placement, prices: seedPrices })
  t.same(byMem.vms.map(v => v.share), [0.75, 0.25])
  t.equal(byMem.vms[0]?.hourly?.toFixed(2), '1.20')
  const byCpu = costPlan({ hosts: [ec2('h', 'cc1.4xlarge')], vms, placement, prices: seedPrices, shareBy: 'vcpus' })
  t.same(byCpu.vms.map(v => v.share), [0.25, 0.75])
  t.equal(byMem.vms[0]?.standalone?.instanceType, 'cc1.4xlarge', 'a VM needing 4 GiB does not fit a small instance')
})

t.test('hosts without a price', async t => {
  const local: HostSpec = { name: 'l', site: 'dc', driver: 'local', cpus: 2, memoryBytes: 2 * GIB, hypervisor: { backend: 'qemu', accel: 'tcg' } }
  const p = costPlan({ hosts: [local, ec2('x', 'm5.large', 'ap-south-1')], vms: [vm('a', 1, GIB, GIB)], placement: { a: 'l' }, prices: seedPrices })
  t.equal(p.totalHourly, 0)
  t.match(p.hosts.find(h => h.name === 'l')?.note, /not priced/)
  t.match(p.hosts.find(h => h.name === 'x')?.note, /no price for m5.large in ap-south-1/)
  t.equal(p.ratio, undefined, 'no comparison without prices')
})

t.test('the default price table', async t => {
  const table = await loadPriceTable()
  t.match(table.asOf, /^\d{4}-\d{2}$/)
  for (const type of ['t3.micro', 't3.small', 'm5.large', 'm5.xlarge', 'c5.4xlarge', 'm5.8xlarge', 'c5.18xlarge', 'm1.small', 'cc2.8xlarge']) {
    t.type(table.prices['us-east-1']?.[type], 'number', `us-east-1 has ${type}`)
  }
  t.same(smallestFitting(table, 'us-east-1', 1, 1.7 * GIB), { instanceType: 't3.small', hourly: 0.0208 }, 'the cheapest instance for a 1.7 GiB VM today')
  // Today's analogue of the seed case: 40 such VMs (1 GiB allocated each) on one m5.8xlarge.
  const vms = Array.from({ length: 40 }, (_, i) => vm(`v${i}`, 1, 1.7 * GIB, GIB))
  const p = costPlan({ hosts: [ec2('big', 'm5.8xlarge')], vms, placement: Object.fromEntries(vms.map(v => [v.name, 'big'])), prices: table })
  t.equal(p.vms[0]?.hourly?.toFixed(4), '0.0384')
  t.equal(p.standaloneHourly?.toFixed(3), '0.832')
})

t.test('a user price table', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'sc-prices-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  const file = join(dir, 'prices.json')
  await writeFile(file, JSON.stringify(seedPrices))
  t.equal((await loadPriceTable(file)).prices['us-east-1']?.['cc1.4xlarge'], 1.6, 'loads a file with the same shape')
  await writeFile(file, '{ not json')
  await t.rejects(loadPriceTable(file), { code: 'SC_PRICES_INVALID' })
  await t.rejects(loadPriceTable(join(dir, 'missing.json')), { code: 'SC_PRICES_INVALID' })
  t.throws(() => validatePriceTable({ ...seedPrices, prices: { 'us-east-1': { 'x9.huge': 1 } } }, 'test'), { code: 'SC_PRICES_INVALID', message: /x9.huge is not in instanceTypes/ })
  t.throws(() => validatePriceTable({ ...seedPrices, prices: { 'us-east-1': { 'm1.small': -1 } } }, 'test'), { code: 'SC_PRICES_INVALID' })
})

t.test('spot hosts at the spot price, with the saving against on-demand per host, per VM and in total', async t => {
  const spot = { ...ec2('s1', 'cc1.4xlarge'), ec2: { region: 'us-east-1', ami: 'ami-0123456789abcdef0', instanceType: 'cc1.4xlarge', spot: true } }
  const vms = [vm('a', 1, GIB, 3 * GIB), vm('b', 1, GIB, GIB)]
  const input = { hosts: [spot, ec2('od1', 'm1.small')], vms: [...vms, vm('c', 1, GIB, GIB)], placement: { a: 's1', b: 's1', c: 'od1' }, prices: seedPrices }
  const p = costPlan({ ...input, spotPrices: { 'us-east-1/cc1.4xlarge': 0.48 } })
  const s1 = p.hosts.find(h => h.name === 's1')
  t.same([s1?.hourly, s1?.onDemandHourly], [0.48, 1.60], 'the spot price, and the on-demand one beside it')
  t.match(s1?.note, /spot price; on-demand \$1\.600\/h, saves 70%/)
  t.same(p.vms.filter(v => v.host === 's1').map(v => [v.name, v.hourly?.toFixed(4), v.onDemandHourly?.toFixed(4)]), [['a', '0.3600', '1.2000'], ['b', '0.1200', '0.4000']], 'each VM\'s share of both')
  t.equal(p.totalHourly, 0.48 + 0.085)
  t.equal(p.onDemandTotalHourly, 1.60 + 0.085, 'on-demand hosts count at their price on both sides')
  t.match(formatCostPlan(p), /total \$0\.565\/h \(on demand \$1\.685\/h: spot saves \$1\.120\/h, 66%\)/)
  t.match(formatCostPlan(p), /vm a on s1 {2}75\.0% {2}\$0\.360\/h {2}\(on-demand \$1\.200\/h\)/)
  const noSpot = costPlan(input)
  t.equal(noSpot.hosts.find(h => h.name === 's1')?.hourly, 1.60, 'without spot prices: on demand, as before')
  t.equal(noSpot.onDemandTotalHourly, undefined)
  t.match(noSpot.hosts.find(h => h.name === 's1')?.note, /on-demand price is shown/)
})
