/** `supercloud plan`'s Overdriver capacity section from a spec. */
import t from 'tap'
import { capacityPlanLines, formatCapacityPlan } from '../../../blanket-manager/cli/plan-capacity.ts'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'

const spec = (n: number, overdriver: string): ReturnType<typeof parseSpec> => parseSpec(`
sites:
  s1: { subnet: 198.18.0.0/16 }
hosts:
  host-a: { site: s1, driver: local, memory: 200G }
  host-b: { site: s1, driver: local, memory: 8G }
images:
  tiny: { builtin: tiny }
vms:
${Array.from({ length: n }, (_, i) => `  vm${i}: { image: tiny, host: host-a, memory: { requested: 1024M, allocated: 640M } }`).join('\n')}
${overdriver}`, 'supercloud.yaml')

t.test('no overdriver section: nothing', async t => {
  t.equal(formatCapacityPlan(spec(2, '')), '')
})

t.test("the seed's example: 150 VMs at 640M of 1024M, p = 0.16, 96% transient → 3 sustained, 31 transient", async t => {
  const s = spec(150, 'overdriver:\n  confidence: 0.968\n  repositories: { hosts: [host-b], memory: 4G }\n')
  const lines = capacityPlanLines(s, { pOverload: 0.16, sustainedShare: 0.04 })
  t.match(lines[1], /150 oversubscribed VMs: at most 3 sustained overloads \(P = 0\.98\d\) and 31 transient/)
  t.match(lines[2], /migration space: 3G/)
  t.match(lines[3], /repository memory: 11\.625G needed \(31 × 384M\), 4G given \(host-b\) — NOT ENOUGH/)
})

t.test('enough repository memory and free slots: no warning', async t => {
  const out = formatCapacityPlan(spec(4, 'overdriver:\n  repositories: { hosts: [host-b], memory: 2G }\n'))
  t.match(out, /4 oversubscribed VMs/)
  t.notMatch(out, /NOT ENOUGH/)
})
