/**
 * Xen hosts through the real CLI: `supercloud up` of two `hypervisor: xen` hosts (each a QEMU
 * machine running Xen 4.17 with the dom0 of images/xen-host) runs two guests as Xen domains:
 * web1 on xen-a, on the site network and joined to db1 on xen-b by a VirtualWire connector
 * between the dom0s (and reaching nothing of its own dom0: the dom0s run the host firewall); web1 has a data disk (raw image, loop + blkback) and a swap disk (the
 * agent's NBD export through the dom0's nbd device). A migration that fails midway leaves db1
 * running where it was; `supercloud migrate` then moves it between the Xen hosts (xl migrate)
 * (over TLS, with the certificates the controller draws for it) with its endpoint re-pointed,
 * also when the receiver reports an error after the domain started; `down` leaves nothing behind.
 * db1 has 96 MiB, not 128: xl sends every page of it, at ~1.4 MiB/s between two TCG dom0s here
 * (64 MiB is too small: the guest's ELF kernel alone takes 58 MiB above the first 16 MiB).
 * One guest per host and two migrations, not three: each guest boot (60-90 s) and each
 * migration (60-150 s) here is a TCG dom0 in a TCG host, the most expensive thing the suite does.
 */
import t, { type Test } from 'tap'
import { sandbox } from '../../helpers/cli.ts'
import { leftovers } from '../../helpers/sweep-lib.ts'
import type { StatusReport } from '../../../blanket-manager/controller/index.ts'

const spec = `
name: xen
sites:
  x: { subnet: 198.18.61.0/24 }
hosts:
  xen-a: { site: x, cpus: 2, memory: 384M, hypervisor: { backend: xen } }
  xen-b: { site: x, cpus: 2, memory: 384M, hypervisor: { backend: xen } }
images:
  tiny: { builtin: tiny }
vms:
  web1:
    image: tiny
    host: xen-a
    memory: 128M
    disks: [ { name: data, size: 16M } ]
    swap: 64M
    nics: [ { name: eth0, address: 198.18.61.101/24 }, { name: eth1, address: 198.19.61.2/24 } ]
  db1:
    image: tiny
    host: xen-b
    memory: 96M
    nics: [ { name: eth0, address: 198.19.61.3/24 } ]
network:
  wires:
    - web1.eth1 -- db1.eth0
`
// A guest here boots as a domain of a TCG-emulated dom0 inside a TCG-emulated host: two guests on
// one 2-vCPU dom0 took 53-89 s on a quiet machine, and more than the default 180 s when the suite's
// other job shared the 2 cores. The boot deadline is raised for that, not the test's assertions;
// it also bounds the Xen machines' own boot (DriverContext.bootTimeoutMs). It was 420 s while `up`
// took 457 s here beside the suite's other job (stop 25), too close on a slower CI machine: 15 min
// now, a bound on a hung boot rather than a measure of a slow one.
// The whole file may take 35 min instead of the suite's 15: its guests boot in a TCG dom0 inside a
// TCG host, and beside the suite's other job (2 jobs on 2 cores) it took 910 s (stop 24), 1318 s
// and 1142 s (2026-12-07: `up` 457 s, each of its three migrations 172-196 s) with every assertion
// passing; alone it takes about 560 s. The limit is there to stop a hung run, not to time it.
t.setTimeout(35 * 60_000)
const sb = sandbox(t, spec, 'xen', { SUPERCLOUD_BOOT_TIMEOUT_MS: '900000' })
// `up` and `migrate` may take longer than the sandbox's 10 min per command: `up`, run
// beside three other e2e runs (load 12-17), was killed at 10 min with its guests still booting.
const SLOW = { timeoutMs: 25 * 60_000 }

async function inGuest (vm: string, cmd: string): Promise<{ code: number, out: string }> {
  const r = await sb.run(['console', vm, '--run', cmd, '--timeout', '120'])
  return { code: r.code, out: r.stdout + r.stderr }
}

async function onHost (host: string, cmd: string): Promise<string> {
  const r = await sb.run(['ssh', host, '--', cmd])
  if (r.code !== 0) throw new Error(`${host}: ${cmd} -> ${r.code}: ${r.stdout}${r.stderr}`)
  return r.stdout
}

/** Names of the Xen domains on a host (`xl list`). */
async function domains (host: string): Promise<string[]> {
  return (await onHost(host, 'xl list')).split('\n').slice(1).map(l => l.split(/\s+/)[0] ?? '').filter(n => n !== '' && n !== 'Domain-0').sort()
}

/**
 * Puts a wrapper in front of xl on `host` (/usr/local/sbin comes first on PATH) until the test
 * ends: `xl migrate-receive ...` runs `receive` (the real xl is "$real"), every other command
 * goes to the real xl unchanged.
 */
async function wrapXlReceive (t: Test, host: string, receive: string): Promise<void> {
  const script = ['#!/bin/sh', 'real=/usr/lib/xen-4.17/bin/xl', `if [ "$1" = migrate-receive ]; then ${receive}; fi`, 'exec "$real" "$@"'].join('\n')
  await onHost(host, `mkdir -p /usr/local/sbin && printf '%s\\n' '${script.replace(/'/g, "'\\''")}' > /usr/local/sbin/xl && chmod 755 /usr/local/sbin/xl`)
  t.teardown(async () => { await onHost(host, 'rm -f /usr/local/sbin/xl').catch(() => {}) })
}

async function status (): Promise<StatusReport> {
  return JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
}

t.test('up runs the guests as Xen domains on two Xen hosts', async t => {
  const r = await sb.run(['up'], SLOW)
  t.equal(r.code, 0, `up succeeds\n${r.stdout.slice(-3000)}${r.stderr}`)
  t.match(r.stdout + r.stderr, /hypervisor xen \(Xen 4\.17/, 'the bootstrap reports Xen as the hypervisor')
  const s = await status()
  t.same(s.hosts.map(h => [h.name, h.accel]).sort(), [['xen-a', 'xen'], ['xen-b', 'xen']], 'both hosts run Xen')
  t.same(s.vms.map(v => [v.name, v.host, v.status]).sort(), [['db1', 'xen-b', 'ready'], ['web1', 'xen-a', 'ready']])
  t.same(await domains('xen-a'), ['web1'], 'xl list on xen-a shows web1')
  t.same(await domains('xen-b'), ['db1'], 'xl list on xen-b shows db1')
})

t.test('guests reach the site network and each other through a connector between the dom0s, and nothing of their dom0', async t => {
  // One console session: the gateway, then the dom0's SSH (its firewall drops what comes from a vif).
  const gw = await inGuest('web1', 'ping -c 2 -W 5 198.18.61.1 >/dev/null && echo gateway-ok; echo "== ssh"; nc -w 3 198.18.61.10 22 </dev/null; echo "== end"')
  t.match(gw.out, /gateway-ok/, `web1 reaches the site gateway through xenbr0: ${gw.out}`)
  const ssh = gw.out.split('== ssh')[1]?.split('== end')[0] ?? 'missing'
  t.notMatch(ssh, /SSH-2\.0|missing/, `web1 gets nothing from its dom0's SSH: ${ssh.trim()}`)
  const table = `supercloud_${sb.prefix('xen') ?? ''}`
  for (const h of ['xen-a', 'xen-b']) t.match(await onHost(h, `nft list table inet ${table}`), /policy drop/, `${h}'s dom0 has the host firewall`)
  const vw = await inGuest('web1', 'ping -c 3 -W 5 198.19.61.3')
  t.equal(vw.code, 0, `web1 on xen-a reaches db1 on xen-b over VirtualWire: ${vw.out}`)
  const ep = await onHost('xen-b', 'cat /var/lib/supercloud/vw/1')
  t.match(ep, /198\.18\.61\.\d+:4789/, `db1's endpoint on xen-b sends to xen-a: ${ep.trim()}`)
})

t.test('a data disk and an Overdriver swap disk on a Xen host: raw image through blkback, swap export through NBD', async t => {
  const disk = await inGuest('web1', 'dd if=/dev/urandom of=/tmp/pat bs=1M count=16 2>/dev/null && dd if=/tmp/pat of=/dev/xvda bs=1M 2>/dev/null && sync && rm /tmp/pat && md5sum /dev/xvda')
  const sum = /^([0-9a-f]{32})\s+\/dev\/xvda/m.exec(disk.out)?.[1]
  t.ok(sum, `web1 wrote its data disk /dev/xvda: ${disk.out}`)
  const file = await onHost('xen-a', 'md5sum /var/lib/supercloud/vms/web1/disk-data.img')
  t.equal(/^([0-9a-f]{32})/.exec(file)?.[1], sum, 'the bytes are in the disk image in xen-a\'s dom0')
  const swaps = await inGuest('web1', 'cat /proc/swaps')
  t.match(swaps.out, /\/dev\/xvdb\s+partition\s+655\d\d/, `the guest swaps on /dev/xvdb, 64 MiB: ${swaps.out}`)
  // 96 MiB into a tmpfs of a 128 MiB guest: the kernel must page some of it out.
  const used = await inGuest('web1', 'mkdir -p /mnt/t && mount -t tmpfs -o size=110m tmpfs /mnt/t && dd if=/dev/zero of=/mnt/t/f bs=1M count=96 2>/dev/null; sync; grep xvdb /proc/swaps; rm -f /mnt/t/f; umount /mnt/t')
  const usedKiB = Number(/\/dev\/xvdb\s+partition\s+\d+\s+(\d+)/.exec(used.out)?.[1] ?? '0')
  t.ok(usedKiB > 0, `pages went to the swap disk: ${usedKiB} KiB (${used.out.trim()})`)
  const exp = await onHost('xen-a', 'du -k /var/lib/supercloud/vms/web1/swap.img | cut -f1; readlink /var/lib/supercloud/vms/web1/run/swap.nbd')
  const [kib, nbd] = exp.trim().split('\n')
  t.ok(Number(kib) > 0, `and reached the agent's swap export through the dom0's NBD device: swap.img holds ${kib} KiB`)
  t.match(nbd, /^\/dev\/nbd\d+$/, `web1's swap disk is ${nbd}`)
})

t.test('a second up changes nothing', async t => {
  const r = await sb.run(['up'], SLOW)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout + r.stderr, /nothing to change/)
})

t.test('a Xen migration that fails midway leaves the guest running where it was', async t => {
  const mark = await inGuest('db1', 'echo xen-$((12345 * 7)) > /tmp/mark; cat /tmp/mark')
  t.match(mark.out, /xen-86415/)
  // xen-a's receiver loses the stream midway: its `xl migrate-receive` gets only the first
  // 32 MiB of the 96 MiB guest (a wrapper earlier on PATH than the real xl; every other xl
  // command goes through unchanged). Cut by bytes, not by time: a timed kill came after the
  // handover once the migration took under 6 s.
  await wrapXlReceive(t, 'xen-a', 'head -c 33554432 | "$real" "$@"; echo "test: stream cut after 32 MiB" >&2; exit 1')
  const r = await sb.run(['migrate', 'db1', '--to', 'xen-a'], SLOW)
  t.not(r.code, 0, `migrate reports the failure\n${r.stdout.slice(-1500)}${r.stderr}`)
  t.match(r.stdout + r.stderr, /Saving domain/, 'xl had started sending the guest when the stream broke')
  t.match(r.stderr, /SC_MIGRATION_FAILED.*the guest still runs on the source/, 'the error says where the guest is')
  const s = await status()
  const db1 = s.vms.find(v => v.name === 'db1')
  t.equal(db1?.host, 'xen-b', 'db1 is still recorded on xen-b')
  t.equal(db1?.status, 'ready', 'as running')
  t.same(await domains('xen-b'), ['db1'], 'and runs there')
  t.notOk((await domains('xen-a')).some(d => d.startsWith('db1')), 'nothing of it is left on xen-a')
  const after = await inGuest('db1', 'cat /tmp/mark')
  t.match(after.out, /xen-86415/, 'the same guest, not a rebooted one')
  const vw = await inGuest('web1', 'ping -c 3 -W 5 198.19.61.3')
  t.equal(vw.code, 0, `its wire still works: ${vw.out}`)
})

t.test('requests Xen cannot serve are refused before anything moves', async t => {
  const d = await sb.run(['migrate', 'web1', '--to', 'xen-b'])
  t.equal(d.code, 2, 'a VM with a disk does not migrate between Xen hosts')
  t.match(d.stderr, /SC_MIGRATE_UNSUPPORTED.*vms\.web1\.disks/, d.stderr)
  const pc = await sb.run(['migrate', 'db1', '--to', 'xen-a', '--mode', 'postcopy'])
  t.equal(pc.code, 2, 'postcopy between Xen hosts is refused')
  t.match(pc.stderr, /pre-copy only/, pc.stderr)
  t.equal((await status()).vms.find(v => v.name === 'db1')?.host, 'xen-b')
})

t.test('migrate moves db1 to xen-a with its VirtualWire endpoint and its state, also when the receiver fails after the domain started', async t => {
  // Past xl's "Domain started" line the sender destroys its copy: the destination must keep
  // the guest even though its receiver then reports an error (here: exits 1 after xl's success).
  // This is the one successful Xen move of the file: everything a move must keep is checked here.
  await wrapXlReceive(t, 'xen-a', '"$real" "$@"; echo "test: receiver exits 1 after xl exited $?" >&2; exit 1')
  const r = await sb.run(['migrate', 'db1', '--to', 'xen-a'], SLOW)
  t.equal(r.code, 0, `migrate succeeds\n${r.stdout.slice(-1500)}${r.stderr}`)
  t.match(r.stdout, /migrated db1 from xen-b to xen-a: total [\d.]+ s/, 'the summary line')
  t.same(await domains('xen-a'), ['db1', 'web1'], 'db1 is a domain of xen-a now')
  t.same(await domains('xen-b'), [], 'and no longer of xen-b')
  const s = await status()
  t.same(s.vms.filter(v => v.name === 'db1').map(v => [v.host, v.status]), [['xen-a', 'ready']], 'status shows db1 on xen-a, ready')
  const after = await inGuest('db1', 'cat /tmp/mark')
  t.match(after.out, /xen-86415/, 'its memory came along (a file in its tmpfs): the same guest')
  const vw = await inGuest('web1', 'ping -c 3 -W 5 198.19.61.3')
  t.equal(vw.code, 0, `web1 still reaches db1 over its wire, now within xen-a: ${vw.out}`)
  // The stream ran over TLS (a Xen host accepts no migration without its x509 pair); the pair's
  // keys left both dom0s with it.
  for (const h of ['xen-a', 'xen-b']) t.equal((await onHost(h, 'ls /var/lib/supercloud/vms/db1/run/mig-tls 2>/dev/null | wc -l')).trim(), '0', `no TLS key of the migration is left on ${h}`)
})

t.test('down removes everything, Xen machines included', async t => {
  const prefix = sb.prefix('xen')
  const r = await sb.run(['down'])
  t.equal(r.code, 0, r.stderr)
  t.same(leftovers(prefix ?? 'none'), { namespaces: [], links: [], processes: [] }, 'no namespace, link or process left')
})
