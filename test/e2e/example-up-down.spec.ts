/**
 * The README's promise, end to end through the real CLI: the example supercloud comes up on
 * this machine (3 namespaced hosts with sshd, the Blanket agent, 3 QEMU guests), the guests
 * reach each other within and across sites, the README's live move (app1 within its site)
 * keeps its peers while db1's move to another site is refused with the VM untouched, a second
 * `up` changes nothing, and `down` leaves nothing behind.
 */
import t, { type Test } from 'tap'
import { readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { sandbox, ROOT } from '../helpers/cli.ts'
import { leftovers } from '../helpers/sweep-lib.ts'
import { parseSpec } from '../../blanket-manager/specfile/load.ts'
import type { StatusReport } from '../../blanket-manager/controller/index.ts'

const exampleFile = join(ROOT, 'examples', 'local.yaml')
const text = readFileSync(exampleFile, 'utf8')
const spec = parseSpec(text, exampleFile)
const sb = sandbox(t, text, spec.name)

const addr = (vm: string): string => (spec.vms[vm]?.nics[0]?.address ?? '').split('/')[0] ?? ''

t.test('up brings the example up', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, `up exits 0\n${r.stderr}`)
  t.match(r.stderr, /plan \(\d+ changes\)/, 'shows the plan first')
  t.match(r.stderr, /host host-a\s+ready: agent \w+ up, hypervisor (kvm|tcg)/, 'reports the hypervisor mode chosen')
})

t.test('status --json shows 3 hosts and 3 running guests', async t => {
  const r = await sb.run(['status', '--json'])
  t.equal(r.code, 0, r.stderr)
  const s = JSON.parse(r.stdout) as StatusReport
  t.same(s.hosts.map(h => [h.name, h.health, h.status]), [['host-a', 'running', 'ready'], ['host-b', 'running', 'ready'], ['host-c', 'running', 'ready']])
  t.same(s.vms.map(v => [v.name, v.state]).sort(), [['app1', 'running'], ['db1', 'running'], ['web1', 'running']])
  for (const h of s.hosts) t.match(h.accel, /^(kvm|tcg)$/)
  const human = await sb.run(['status'])
  t.match(human.stdout, /web1\s+host-a\s+running/)
})

t.test('guests ping each other within a site and across the WAN', async t => {
  const pairs: Array<[string, string]> = [['web1', 'app1'], ['web1', 'db1'], ['db1', 'app1']]
  for (const [from, to] of pairs) {
    const r = await sb.run(['console', from, '--run', `ping -c 2 -W 5 ${addr(to)}`, '--timeout', '60'])
    t.equal(r.code, 0, `${from} -> ${to} (${addr(to)}): ${r.stdout}${r.stderr}`)
    t.match(r.stdout, /2 packets transmitted, 2 (packets )?received/)
  }
})

/** `from` pings `to`'s address twice (through the real console); the test fails with the output if not. */
async function pings (t: Test, from: string, to: string, what: string): Promise<void> {
  const r = await sb.run(['console', from, '--run', `ping -c 2 -W 5 ${addr(to)}`, '--timeout', '60'])
  t.equal(r.code, 0, `${what}: ${from} -> ${to} (${addr(to)}): ${r.stdout}${r.stderr}`)
  t.match(r.stdout, /2 packets transmitted, 2 (packets )?received/, what)
}

async function hostOf (vm: string): Promise<[string | undefined, string | undefined]> {
  const v = (JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport).vms.find(x => x.name === vm)
  return [v?.host, v?.state]
}

// Before the move its peers reached it: the test above pinged web1 -> app1 and db1 -> app1.
t.test('the README\'s move: app1 moves live within cloud-a and keeps its address and peers', async t => {
  const r = await sb.run(['migrate', 'app1', '--to', 'host-a', '--json'])
  t.equal(r.code, 0, r.stderr)
  t.same(await hostOf('app1'), ['host-a', 'running'])
  await pings(t, 'web1', 'app1', 'after the move, its peer in the site reaches it')
  await pings(t, 'app1', 'db1', 'after the move, it reaches db1 across the WAN (the README\'s ping)')
})

t.test('the README\'s refused move: db1 to another site, refused before anything moves', async t => {
  const r = await sb.run(['migrate', 'db1', '--to', 'host-b'])
  t.equal(r.code, 2, `exit 2\n${r.stderr}`)
  t.match(r.stderr, /error\[SC_MIGRATION_NETWORK\]: db1 cannot move to host-b \(site cloud-a\)/)
  t.match(r.stderr, /NIC eth0 \(198\.18\.2\.101\/24\) is on the site network of cloud-b \(198\.18\.2\.0\/24\)/)
  t.match(r.stderr, /VirtualWire wire/, 'says the way out')
  t.same(await hostOf('db1'), ['host-c', 'running'], 'db1 still runs on host-c')
  await pings(t, 'web1', 'db1', 'db1 still reachable')
})

t.test('a guest command that fails reports its exit status', async t => {
  const r = await sb.run(['console', 'web1', '--run', 'false'])
  t.equal(r.code, 1)
})

t.test('db1 has its data disk', async t => {
  const r = await sb.run(['console', 'db1', '--run', 'cat /sys/block/vda/size'])
  t.equal(r.code, 0, r.stderr)
  t.equal(Number(r.stdout.trim()) * 512, spec.vms.db1?.disks[0]?.sizeBytes)
})

t.test('supercloud ssh runs a command on a host', async t => {
  const r = await sb.run(['ssh', 'host-c', 'ip', '-4', '-o', 'addr', 'show', 'br0'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /198\.18\.2\./)
})

t.test('a second up changes nothing', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /plan: nothing to change/)
  t.match(r.stderr, /up: 0 changes applied/)
})

t.test('down removes everything', async t => {
  const prefix = sb.prefix(spec.name)
  t.ok(prefix, 'a prefix was chosen')
  const r = await sb.run(['down'])
  t.equal(r.code, 0, r.stderr)
  t.same(leftovers(prefix ?? 'none'), { namespaces: [], links: [], processes: [] }, 'no namespace, link or process left')
  t.notOk(existsSync(join(sb.stateRoot, spec.name)), 'state directory removed')
  const s = await sb.run(['status', '--json'])
  t.same((JSON.parse(s.stdout) as StatusReport).hosts, [])
})
