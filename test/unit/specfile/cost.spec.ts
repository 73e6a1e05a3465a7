/**
 * The glue of `supercloud cost` (blanket-manager/cli/cost.ts): a spec, the planner's
 * placement and a price table (built-in, or the spec's `prices:`) → the cost table.
 */
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadSpec, parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { priceTableFor, renderCost, specCostPlan } from '../../../blanket-manager/cli/cost-plan.ts'
import { loadPriceTable } from '../../../drivers/ec2/pricing.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

t.test('examples/ec2.yaml: hosts, shares by allocated memory, the standalone comparison', async t => {
  const spec = await loadSpec(path.join(root, 'examples/ec2.yaml'))
  const plan = specCostPlan(spec, await priceTableFor(spec))
  t.same(plan.hosts.map(h => [h.name, h.instanceType, h.region, h.spot, h.hourly, h.vms]), [
    ['aws1', 'm5.xlarge', 'eu-west-1', false, 0.214, ['web1', 'web2']],
    ['aws2', 'm5.xlarge', 'eu-west-1', true, 0.214, ['app1', 'db1']]
  ])
  // app1 has 4G allocated and db1 8G on aws2: one third and two thirds of its price.
  t.same(plan.vms.map(v => [v.name, v.host, Number(v.share.toFixed(4)), v.standalone?.instanceType]), [
    ['web1', 'aws1', 0.5, 't3.small'], ['web2', 'aws1', 0.5, 't3.small'],
    ['app1', 'aws2', 0.3333, 't3.medium'], ['db1', 'aws2', 0.6667, 't3.large']
  ])
  t.equal(plan.totalHourly, 0.428)
  const text = renderCost(plan)
  t.match(text, /host aws1 {2}m5\.xlarge eu-west-1 {2}\$0\.214\/h {2}2 VM\(s\)/)
  t.match(text, /host aws2 {2}m5\.xlarge eu-west-1 spot .*spot: the on-demand price is shown/)
  t.match(text, /vm db1 on aws2 {2}66\.7% {2}\$0\.143\/h {2}alone: t3\.large \$0\.0912\/h/)
  t.match(text, /total \$0\.428\/h\n/)
  const byCpu = specCostPlan(spec, await priceTableFor(spec), { shareBy: 'vcpus' })
  t.same(byCpu.vms.filter(v => v.host === 'aws2').map(v => [v.name, Number(v.share.toFixed(4))]), [['app1', 0.6667], ['db1', 0.3333]], 'app1 has 2 vCPUs, db1 1')
})

t.test('VMs without host: follow the planner; local hosts are listed, not priced', async t => {
  const spec = parseSpec(`sites: { lab: { subnet: 198.18.60.0/24 }, aws: {} }
hosts:
  big: { site: aws, driver: ec2, cpus: 4, memory: 3G, ec2: { region: us-east-1, ami: ami-0d5eb1a2c3d4e5f60, instanceType: m5.xlarge } }
  lab1: { site: lab, cpus: 1, memory: 1G }
images: { tiny: { builtin: tiny } }
vms:
  v1: { image: tiny, memory: 2G, nics: [{ address: 198.18.61.10/24 }] }
  v2: { image: tiny, memory: 512M, nics: [{ address: 198.18.61.11/24 }] }
  v3: { image: tiny, memory: 512M, host: lab1 }
`, '/specs/s.yaml')
  const plan = specCostPlan(spec, await loadPriceTable())
  t.same(plan.hosts.map(h => [h.name, h.hourly, h.vms]), [['big', 0.192, ['v1', 'v2']], ['lab1', undefined, ['v3']]], 'first fit by memory puts v1 and v2 on big')
  t.equal(plan.hosts[1]?.note, 'local host: not priced')
  t.same(plan.vms.map(v => [v.name, v.share, v.hourly]), [['v1', 0.8, 0.192 * 0.8], ['v2', 0.2, 0.192 * 0.2], ['v3', 1, undefined]])
  t.notMatch(renderCost(plan), /vm v3/, 'an unpriced VM has no cost line')
})

t.test("the spec's prices: table is used, and a bad one is SC_PRICES_INVALID", async t => {
  const dir = await mkdtemp(path.join(tmpdir(), 'sc-cost-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  await writeFile(path.join(dir, 'my-prices.json'), JSON.stringify({
    asOf: '2011-06',
    currency: 'USD',
    instanceTypes: { 'cc1.4xlarge': { vcpus: 8, memoryGiB: 23 }, 'm1.small': { vcpus: 1, memoryGiB: 1.7 } },
    prices: { 'us-east-1': { 'cc1.4xlarge': 1.6, 'm1.small': 0.085 } }
  }))
  // The seed's case (seed 002 §4.3.2): 40 small VMs on one Cluster 4XL, 47% of 40 small instances.
  const vms = Array.from({ length: 40 }, (_, i) => `  vm${i}: { image: tiny, memory: { requested: 1740M, allocated: 588M }, nics: [{ address: 198.18.61.${i + 10}/24 }] }`).join('\n')
  const file = path.join(dir, 'supercloud.yaml')
  await writeFile(file, `prices: my-prices.json
sites: { aws: }
hosts:
  cc: { site: aws, driver: ec2, cpus: 40, memory: 23G, ec2: { region: us-east-1, ami: ami-0d5eb1a2c3d4e5f60, instanceType: cc1.4xlarge } }
images: { tiny: { builtin: tiny } }
vms:
${vms}
`)
  const spec = await loadSpec(file)
  t.equal(spec.prices, path.join(dir, 'my-prices.json'))
  const plan = specCostPlan(spec, await priceTableFor(spec))
  t.equal(plan.asOf, '2011-06', "the spec's table, not the built-in one")
  t.equal(plan.totalHourly, 1.6)
  t.equal(plan.vms[0]?.hourly?.toFixed(4), '0.0400', '$0.04 per VM-hour')
  t.equal(plan.vms[0]?.standalone?.instanceType, 'm1.small')
  t.match(renderCost(plan), /one instance per VM would cost \$3\.400\/h: the supercloud costs 47% of that/)

  await writeFile(path.join(dir, 'my-prices.json'), '{"asOf": "2011-06"}')
  await t.rejects(priceTableFor(spec), { code: 'SC_PRICES_INVALID', message: /currency/ })
  await t.rejects(priceTableFor(spec, path.join(dir, 'none.json')), { code: 'SC_PRICES_INVALID', message: /none\.json: cannot be read/ }, 'a --prices file wins over the spec')
})

t.test('a spec without ec2 hosts has nothing to price', async t => {
  const spec = await loadSpec(path.join(root, 'examples/local.yaml'))
  t.equal(renderCost(specCostPlan(spec, await loadPriceTable())), 'no ec2 hosts: nothing to price (3 host(s) of other drivers)\n')
})

t.test('examples/mixed.yaml: the ec2 host priced, the local host not', async t => {
  const spec = await loadSpec(path.join(root, 'examples/mixed.yaml'))
  t.same(Object.values(spec.hosts).map(h => [h.name, h.driver, h.ec2?.instanceType]), [['local1', 'local', undefined], ['aws1', 'ec2', 't3.small']])
  const plan = specCostPlan(spec, await loadPriceTable())
  t.same(plan.hosts.map(h => [h.name, h.hourly, h.vms]), [['aws1', 0.0208, ['cloud1']], ['local1', undefined, ['lab1']]])
})
