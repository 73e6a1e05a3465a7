/**
 * Disk reuse on return (issue 7, MiyakoDori for disks), through the real CLI: a VM that migrates
 * back to a host it left sends only the blocks written since it left, and its disk is the disk
 * it had (checksums computed inside the guest, page cache dropped first so the disk itself is
 * read), also when the guest keeps writing during the migration. When the kept image is gone
 * the whole disk is copied, still correctly.
 */
import t from 'tap'
import { existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sandbox } from '../helpers/cli.ts'
import { tinyVm, twoHostSpec } from '../helpers/specs.ts'
import type { StatusReport } from '../../blanket-manager/controller/index.ts'

const MiB = 1048576
const DISK = 64 * MiB

const spec = twoHostSpec({
  name: 'migret',
  site: 'a',
  subnet: '198.18.54.0/24',
  vms: tinyVm('db1', { host: 'h1', memory: '128M', disk: '64M', address: '198.18.54.101/24' })
})
const sb = sandbox(t, spec, 'migret')

interface Summary { from: string, to: string, sentBytes: number, diskSentBytes: number, diskSizeBytes: number, diskReused: boolean }

async function inGuest (cmd: string): Promise<string> {
  const r = await sb.run(['console', 'db1', '--run', cmd, '--timeout', '120'])
  if (r.code !== 0) throw new Error(`db1: ${cmd} -> ${r.code}: ${r.stdout}${r.stderr}`)
  return r.stdout
}

/** md5 of the whole disk as the guest reads it from the disk (not from its page cache). */
async function diskSum (): Promise<string> {
  const out = await inGuest('sync; echo 3 > /proc/sys/vm/drop_caches; md5sum /dev/vda')
  const m = /^([0-9a-f]{32})\s+\/dev\/vda/m.exec(out)?.[1]
  if (m === undefined) throw new Error(`no md5sum in: ${out}`)
  return m
}

async function migrate (to: string): Promise<{ summary: Summary, stderr: string }> {
  const r = await sb.run(['migrate', 'db1', '--to', to, '--json'])
  if (r.code !== 0) throw new Error(`migrate to ${to} -> ${r.code}: ${r.stderr}`)
  return { summary: JSON.parse(r.stdout) as Summary, stderr: r.stderr }
}

async function hostOf (): Promise<string | undefined> {
  const s = JSON.parse((await sb.run(['status', '--json'])).stdout) as StatusReport
  return s.vms.find(v => v.name === 'db1')?.host
}

/** The directory where `host`'s agent keeps the disk images db1 left there. */
function departed (host: string): string {
  return join(sb.stateRoot, 'migret', 'hosts', host, 'departed', 'db1')
}

let sum = ''

t.test('up, and fill part of the disk', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 0, r.stderr)
  await inGuest('dd if=/dev/urandom of=/dev/vda bs=1M count=8 conv=notrunc,fsync 2>/dev/null')
  sum = await diskSum()
  t.match(sum, /^[0-9a-f]{32}$/)
})

t.test('first move copies the whole disk and leaves the image on the source', async t => {
  const { summary } = await migrate('h2')
  t.equal(summary.to, 'h2')
  t.equal(summary.diskReused, false)
  t.equal(summary.diskSizeBytes, DISK)
  t.ok(summary.diskSentBytes >= 8 * MiB, `the written part of the disk was sent (${summary.diskSentBytes})`)
  t.equal(await diskSum(), sum, 'disk intact on h2')
  t.ok(existsSync(join(departed('h1'), 'departed.json')), 'h1 kept the disk image')
})

t.test('return sends only the blocks written since the VM left', async t => {
  await inGuest('dd if=/dev/urandom of=/dev/vda bs=64k count=16 seek=320 conv=notrunc,fsync 2>/dev/null')
  sum = await diskSum()
  const { summary, stderr } = await migrate('h1')
  t.match(stderr, /reusing the disk left on h1: [\d.]+ (KiB|MiB) of 64\.0 MiB dirty/)
  t.equal(summary.diskReused, true)
  t.equal(summary.diskSizeBytes, DISK)
  t.ok(summary.diskSentBytes >= MiB, `the written MiB was sent (${summary.diskSentBytes})`)
  t.ok(summary.diskSentBytes < 0.25 * DISK, `disk bytes sent on return ${summary.diskSentBytes} < 25% of ${DISK}`)
  t.equal(await hostOf(), 'h1')
  t.equal(await diskSum(), sum, 'disk on h1 equals the disk on h2')
  t.notOk(existsSync(departed('h1')), 'the kept image on h1 is in use again')
  t.ok(existsSync(join(departed('h2'), 'departed.json')), 'h2 kept its image')
})

t.test('return while the guest keeps writing: the writes all arrive', async t => {
  // A 6 MiB pattern written 64 KiB at a time at 32 MiB (one chunk every ~0.3 s), before, during
  // and after the migration; the rest of the disk must not change.
  const prep = await inGuest('dd if=/dev/urandom of=/tmp/pat bs=64k count=96 2>/dev/null; md5sum /tmp/pat; ' +
    'dd if=/dev/vda bs=1M count=32 2>/dev/null | md5sum; dd if=/dev/vda bs=1M skip=38 2>/dev/null | md5sum')
  const sums = [...prep.matchAll(/^([0-9a-f]{32})\s/gm)].map(m => m[1])
  t.equal(sums.length, 3, prep)
  await inGuest('rm -f /tmp/w.done /tmp/w.i; (i=0; while [ $i -lt 96 ]; do dd if=/tmp/pat of=/dev/vda bs=64k skip=$i seek=$((512+i)) count=1 conv=notrunc,fsync 2>/dev/null; i=$((i+1)); echo $i > /tmp/w.i; sleep 0.2; done; touch /tmp/w.done) >/dev/null 2>&1 & sleep 1')
  const { summary } = await migrate('h2')
  t.equal(summary.diskReused, true)
  t.ok(summary.diskSentBytes < 0.25 * DISK, `disk bytes sent ${summary.diskSentBytes} < 25% of ${DISK}`)
  const out = await inGuest('echo "chunks written when the migration ended: $(cat /tmp/w.i) of 96"; while [ ! -e /tmp/w.done ]; do sleep 0.5; done; sync; echo 3 > /proc/sys/vm/drop_caches; ' +
    'dd if=/dev/vda bs=64k skip=512 count=96 2>/dev/null | md5sum; dd if=/dev/vda bs=1M count=32 2>/dev/null | md5sum; dd if=/dev/vda bs=1M skip=38 2>/dev/null | md5sum')
  t.comment(/chunks written when the migration ended: \d+ of 96/.exec(out)?.[0] ?? '')
  const after = [...out.matchAll(/^([0-9a-f]{32})\s/gm)].map(m => m[1])
  t.same(after, sums, 'pattern written in full, the rest of the disk unchanged')
  sum = await diskSum()
})

t.test('kept image gone: the whole disk is copied, still correct', async t => {
  t.ok(existsSync(join(departed('h1'), 'departed.json')), 'h1 kept its image')
  rmSync(departed('h1'), { recursive: true, force: true })
  await inGuest('dd if=/dev/urandom of=/dev/vda bs=64k count=4 seek=800 conv=notrunc,fsync 2>/dev/null')
  sum = await diskSum()
  const { summary, stderr } = await migrate('h1')
  t.match(stderr, /the disk left on h1 is gone: copying the whole disk/)
  t.equal(summary.diskReused, false)
  t.ok(summary.diskSentBytes >= 11 * MiB, `the disk was copied (${summary.diskSentBytes})`)
  t.equal(await diskSum(), sum, 'disk intact after the full copy')
})

t.test('down removes the images left behind', async t => {
  t.ok(existsSync(join(departed('h2'), 'departed.json')))
  const r = await sb.run(['down'])
  t.equal(r.code, 0, r.stderr)
  t.notOk(existsSync(departed('h2')))
})
