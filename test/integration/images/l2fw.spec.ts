/**
 * A guest as a transparent L2 firewall: three tiny guests under QEMU TCG in a test
 * namespace, A.eth0 — bridge a — fw.eth0 | l2fw | fw.eth1 — bridge b — B.eth0.
 * The firewall starts at boot from sc.fw; the only path from A to B is through it.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { guestCmdline, guestReadyLine, type GuestFirewall } from '../../../images/guest/cmdline.ts'
import { BOOT_TIMEOUT_MS, haveQemu, qemuArgs, SerialGuest, sh } from './serial-guest.ts'

const prefix = `sct${randomBytes(2).toString('hex')}`
const cacheDir = mkdtempSync(join(tmpdir(), `${prefix}-cache-`))
t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }))

interface Counters { forwarded: number, dropped: number, sendErrors: number, rules: Array<{ rule: string, frames: number, bytes: number }> }
interface ProbeSummary { sent: number, received: number, lost: number }

function mac (i: number): string {
  return `52:54:00:${randomBytes(2).toString('hex').replace(/(..)(..)/, '$1:$2')}:${(0x10 + i).toString(16)}`
}

t.test('l2fw between two bridges passes what its rules allow, also on a VLAN', { skip: haveQemu ? false : 'qemu-system-x86_64 missing' }, async t => {
  const img = await buildTinyImage({ cacheDir })
  const ns = `${prefix}-fw`
  const bridges = { a: `${prefix}ba`, b: `${prefix}bb` }
  const taps = { a: `${prefix}ta`, f0: `${prefix}tf0`, f1: `${prefix}tf1`, b: `${prefix}tb` }
  const guests: SerialGuest[] = []
  t.teardown(async () => {
    for (const g of guests) await g.kill()
    for (const tap of Object.values(taps)) spawnSync('ip', ['-n', ns, 'link', 'del', tap])
    for (const br of Object.values(bridges)) spawnSync('ip', ['-n', ns, 'link', 'del', br])
    spawnSync('ip', ['netns', 'del', ns])
  })

  sh('ip', ['netns', 'add', ns])
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  for (const br of Object.values(bridges)) {
    sh('ip', ['-n', ns, 'link', 'add', br, 'type', 'bridge'])
    sh('ip', ['-n', ns, 'link', 'set', br, 'up'])
  }
  const tapBridge: Record<keyof typeof taps, string> = { a: bridges.a, f0: bridges.a, f1: bridges.b, b: bridges.b }
  for (const [k, tap] of Object.entries(taps) as Array<[keyof typeof taps, string]>) {
    sh('ip', ['-n', ns, 'tuntap', 'add', 'dev', tap, 'mode', 'tap'])
    sh('ip', ['-n', ns, 'link', 'set', tap, 'master', tapBridge[k]])
    sh('ip', ['-n', ns, 'link', 'set', tap, 'up'])
  }

  const addrA = '198.18.78.11'
  const addrB = '198.18.78.12'
  const vlanA = '198.18.79.11'
  const vlanB = '198.18.79.12'
  const firewall: GuestFirewall = {
    between: ['eth0', 'eth1'],
    rules: [
      { action: 'allow', match: 'arp' },
      { action: 'allow', match: 'icmp' },
      { action: 'allow', match: 'udp:7' },
      { action: 'allow', match: 'vlan:10+udp:9' }
    ],
    default: 'drop'
  }
  const nic = (tap: string, i: number): string[] => ['-netdev', `tap,id=n${i},ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n${i},mac=${mac(i)}`]
  const boot = (name: string, append: string, nics: string[]): SerialGuest => {
    const g = new SerialGuest(name, 'ip', ['netns', 'exec', ns, 'qemu-system-x86_64', ...qemuArgs(img, append, nics)])
    guests.push(g)
    return g
  }
  const a = boot(`${prefix}-a`, guestCmdline({ name: `${prefix}-a`, nics: [{ ifname: 'eth0', address: `${addrA}/24` }] }), nic(taps.a, 0))
  const fw = boot(`${prefix}-fw`, guestCmdline({ name: `${prefix}-fw`, nics: [], firewall }), [...nic(taps.f0, 1), ...nic(taps.f1, 2)])
  const b = boot(`${prefix}-b`, guestCmdline({ name: `${prefix}-b`, nics: [{ ifname: 'eth0', address: `${addrB}/24` }], udpEchoPort: 7 }), nic(taps.b, 3))
  await Promise.all(guests.map(g => g.waitFor(new RegExp(`^${guestReadyLine(g.name)}$`, 'm'), BOOT_TIMEOUT_MS)))
  await Promise.all(guests.map(g => g.prompt(30_000)))
  t.pass('A, B and the firewall booted (l2fw started from sc.fw)')

  const running = await fw.run('kill -0 $(cat /run/l2fw.pid) && echo l2fw-running', /^l2fw-running$/m)
  t.ok(running, 'l2fw runs in the firewall guest')

  // B also echoes UDP port 9, which the firewall drops unless it comes tagged with VLAN 10.
  await b.run('netprobe echo 9 >/dev/null 2>&1 & echo started-9', /^started-9$/m)

  const ping = await a.run(`ping -c 3 -W 5 ${addrB}; echo ping-rc=$?`, /(\d+) packets received[\s\S]*ping-rc=(\d+)/, 60_000)
  t.equal(ping[2], '0', 'A pings B through the firewall (ARP and ICMP allowed)')
  t.ok(Number(ping[1]) >= 1, `${ping[1]}/3 replies`)

  const probe = async (dst: string, port: number): Promise<ProbeSummary> => {
    const m = await a.run(`netprobe send ${dst} ${port} --count 20 --interval-ms 20 --linger-ms 1500`, /^(\{"sent".*\})$/m, 60_000)
    return JSON.parse(m[1] ?? '') as ProbeSummary
  }
  const udp7 = await probe(addrB, 7)
  t.equal(udp7.sent, 20)
  t.ok(udp7.received > 0, `UDP to port 7 passes: ${udp7.received}/20 echoed`)
  const udp9 = await probe(addrB, 9)
  t.equal(udp9.sent, 20)
  t.equal(udp9.received, 0, 'UDP to port 9 is dropped: nothing echoed')
  t.equal(udp9.lost, 20, 'loss is 100%')

  // A VLAN subinterface on each side: tagged frames cross the firewall with their tag.
  for (const [g, addr] of [[a, vlanA], [b, vlanB]] as Array<[SerialGuest, string]>) {
    await g.run(`ip link add link eth0 name eth0.10 type vlan id 10 && ip addr add ${addr}/24 dev eth0.10 && ip link set eth0.10 up && echo vlan-up`, /^vlan-up$/m)
  }
  const vid = await b.run('cat /proc/net/vlan/eth0.10 | head -n 1', /VID: (\d+)\s/)
  t.equal(vid[1], '10', 'B has eth0.10 with VLAN ID 10 (busybox ip + 8021q module)')
  const vping = await a.run(`ping -c 3 -W 5 ${vlanB}; echo ping-rc=$?`, /(\d+) packets received[\s\S]*ping-rc=(\d+)/, 60_000)
  t.equal(vping[2], '0', 'A.eth0.10 pings B.eth0.10 through the firewall')
  const vudp9 = await probe(vlanB, 9)
  t.ok(vudp9.received > 0, `UDP to port 9 on VLAN 10 passes (vlan:10+udp:9): ${vudp9.received}/20 echoed`)

  // One short line per field, so a kernel message on the console cannot split a long line.
  const c = await fw.run("kill -USR1 $(cat /run/l2fw.pid); sleep 1; echo CNT-BEGIN-$((6*7)); grep forwarded /run/l2fw.log | tail -n 1 | tr ',' '\\n'; echo CNT-END-$((6*7))", /^CNT-BEGIN-42$([\s\S]*?)^CNT-END-42$/m)
  const raw = (c[1] ?? '').split('\n').filter(l => /^[{["]/.test(l)).join(',')
  let counters: Counters
  try { counters = JSON.parse(raw) as Counters } catch (err) { throw new Error(`cannot parse l2fw counters ${JSON.stringify(c[1])}: ${(err as Error).message}`) }
  const frames = (rule: string): number => counters.rules.find(r => r.rule === rule)?.frames ?? -1
  t.same(counters.rules.map(r => r.rule), ['allow arp', 'allow icmp', 'allow udp:7', 'allow vlan:10+udp:9', 'default drop'], 'one counter per rule, then the default')
  t.ok(frames('allow icmp') >= 12, `ICMP frames counted (${frames('allow icmp')}; echo requests and replies, untagged and tagged)`)
  t.ok(frames('allow udp:7') >= 2 * udp7.received, `UDP 7 frames counted both ways (${frames('allow udp:7')})`)
  t.ok(frames('allow vlan:10+udp:9') >= 2 * vudp9.received, `tagged UDP 9 frames counted (${frames('allow vlan:10+udp:9')})`)
  t.ok(frames('default drop') >= 20, `the 20 untagged UDP 9 datagrams are among the dropped frames (${frames('default drop')})`)
  t.equal(counters.dropped, frames('default drop'), 'dropped = what the default dropped')
  t.equal(counters.sendErrors, 0, 'no send errors')
})
