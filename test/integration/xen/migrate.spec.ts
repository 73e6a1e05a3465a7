/**
 * Live migration between two real Xen hosts (Xen 4.17 under QEMU TCG, images/xen-host):
 * both dom0s on one bridge in a test namespace, a PVH guest from the tiny image moved with
 * `xl migrate` (live: PVH guest, HAP log-dirty) over a plain TCP stream (busybox nc on both ends), still answering ping
 * at its address afterwards. Heavy: two TCG machines at once for ~5 minutes (the migration
 * itself takes minutes under TCG), so it runs only with SC_XEN_MIGRATE=1.
 */
import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshConnection } from '../../../blanket-manager/ssh/client.ts'
import { startXenHost, type XenHost } from '../../../drivers/local/xen-host.ts'
import { xlGuestConfig } from '../../../drivers/local/xen-host-args.ts'
import { buildTinyImage } from '../../../images/guest/build.ts'
import { buildXenHostImage } from '../../../images/xen-host/build.ts'
import { xenGuestInitrd } from '../../../images/xen-host/guest-overlay.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'

if (process.env.SC_XEN_MIGRATE !== '1') {
  t.plan(0, 'Xen-to-Xen migration: set SC_XEN_MIGRATE=1 (two TCG machines for ~5 minutes)')
  process.exit(0)
}

const prefix = `sct${randomBytes(2).toString('hex')}`
const ns = `${prefix}-xen`
const br = `${prefix}br`
registerPrefix(prefix)
const dir = mkdtempSync(join(tmpdir(), `${prefix}-xen-`))
const hosts: XenHost[] = []
const conns: SshConnection[] = []
t.teardown(async () => {
  for (const c of conns) c.close()
  await Promise.all(hosts.map(async h => { await h.stop() }))
  sweepPrefix(prefix)
  rmSync(dir, { recursive: true, force: true })
})

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const ping = (ip: string): ReturnType<typeof spawnSync> =>
  spawnSync('ip', ['netns', 'exec', ns, 'busybox', 'ping', '-c', '3', '-W', '5', ip], { encoding: 'utf8' })
const domains = async (c: SshConnection): Promise<string[]> =>
  (await c.exec('xl list')).stdout.split('\n').slice(1).map(l => l.split(/\s+/)[0] ?? '').filter(n => n !== '')

t.test('a PVH guest moves from one Xen host to another with xl migrate and keeps answering', async t => {
  execFileSync('ip', ['netns', 'add', ns])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'add', br, 'type', 'bridge'])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', '198.18.240.1/24', 'dev', br])
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', br, 'up'])
  const key = join(dir, 'id_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'xen-test', '-f', key])
  const image = await buildXenHostImage()

  const started = Date.now()
  const [a, b] = await Promise.all(['xen1', 'xen2'].map(async (name, i) => {
    const h = await startXenHost({
      prefix, name, ns, image, bridge: br, tap: `${prefix}${name}`,
      // HVM + HAP for a PVH guest: Debian's Xen has no shadow paging, so PV guests have no log-dirty to migrate live.
      cpuModel: 'max,-smap',
      dir: join(dir, name),
      address: `198.18.240.${2 + i}/24`,
      tapAddress: '198.18.240.1',
      privateKeyPath: key
    })
    hosts.push(h)
    return h
  }))
  if (a === undefined || b === undefined) throw new Error('unreachable')
  t.comment(`two Xen hosts up in ${Date.now() - started} ms (${a.timings.sshMs} / ${b.timings.sshMs} ms each)`)
  const ca = await SshConnection.connect('xen1', a.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
  conns.push(ca)

  const tiny = await buildTinyImage()
  const gdir = '/var/lib/xen/images/g1'
  await ca.exec(`mkdir -p ${gdir}`)
  await ca.writeFile(`${gdir}/vmlinuz`, readFileSync(tiny.kernel))
  await ca.writeFile(`${gdir}/initrd.img`, await xenGuestInitrd(tiny))
  await ca.writeFile(`${gdir}/g1.cfg`, xlGuestConfig({
    name: 'g1',
    type: 'pvh',
    tscMode: 'native',
    kernel: `${gdir}/vmlinuz`,
    ramdisk: `${gdir}/initrd.img`,
    extra: 'sc.name=g1 sc.net=eth0:198.18.240.10/24',
    memoryMiB: 128,
    vifs: [{ bridge: 'xenbr0', mac: '02:fc:00:00:00:0a' }]
  }))
  await ca.exec(`xl create ${gdir}/g1.cfg`, { timeoutMs: 120_000 })
  const bootStart = Date.now()
  while (Date.now() - bootStart < 180_000) {
    const text = (await ca.exec('cat /var/log/xen/console/guest-g1.log 2>/dev/null', { allowFailure: true })).stdout
    if (/^SUPERCLOUD-GUEST-(READY|FAILED) /m.test(text)) break
    await sleep(1000)
  }
  t.comment(`guest ready after ${Date.now() - bootStart} ms`)
  const before = ping('198.18.240.10')
  t.equal(before.status, 0, 'guest answers on xen1')

  // Connected only now: an idle connection can miss ssh2's keepalives while the machine is loaded.
  const cb = await SshConnection.connect('xen2', b.ssh, { timeoutMs: 60_000, keepaliveIntervalMs: 10_000, keepaliveCountMax: 12 })
  conns.push(cb)
  // Receiver: one connection, handed to `xl migrate-receive` on stdin/stdout.
  await cb.writeFile('/run/migrate-receive', '#!/bin/sh\nexec xl migrate-receive\n', 0o755)
  await cb.exec('start-stop-daemon -S -b -m -p /run/migrate-receive.pid -x /bin/busybox -- nc -l -p 8002 -e /run/migrate-receive')
  for (let i = 0; i < 50 && !/:8002\s/.test((await cb.exec('netstat -ltn')).stdout); i++) await sleep(200)
  const migStart = Date.now()
  // With an empty -s, xl runs the "host" argument as the command carrying the stream.
  const mig = await ca.exec("xl migrate -s '' g1 'busybox nc 198.18.240.3 8002'", { timeoutMs: 300_000, allowFailure: true })
  t.comment(`xl migrate took ${Date.now() - migStart} ms`)
  t.equal(mig.code, 0, `xl migrate succeeds\n${mig.stdout}${mig.stderr}`)

  t.notOk((await domains(ca)).includes('g1'), 'g1 is gone from xen1')
  t.ok((await domains(cb)).includes('g1'), 'g1 runs on xen2')
  const brif = (await cb.exec('ls /sys/class/net/xenbr0/brif')).stdout
  t.match(brif, /^vif\d+\.0$/m, 'its vif is in xen2\'s bridge')
  const after = ping('198.18.240.10')
  t.equal(after.status, 0, `guest answers at the same address through xen2\n${String(after.stdout)}${String(after.stderr)}`)
})
