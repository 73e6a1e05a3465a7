/**
 * The Xen host image build against the real inputs on this machine (Xen and kernel in
 * /boot, xen-utils, openssh-server, busybox-static): content-addressed cache,
 * byte-for-byte reproducibility, and the initramfs holding what dom0 needs.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { buildXenHostImage } from '../../../images/xen-host/build.ts'
import type { ProgressEvent } from '../../../core/progress.ts'

const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex')

t.test('build lands in <cache>/images/xen-host-<id>, is cached, and rebuilds to the same bytes', async t => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'sct-xenimg-'))
  t.teardown(() => rmSync(cacheDir, { recursive: true, force: true }))
  const img = await buildXenHostImage({ cacheDir })
  t.match(img.id, /^[0-9a-f]{12}$/)
  t.equal(img.dir, join(cacheDir, 'images', `xen-host-${img.id}`))
  t.match(img.xenVersion, /^4\.\d+$/)

  const xen = readFileSync(img.xen)
  t.equal(xen.subarray(0, 4).toString('latin1'), '\x7fELF', 'Xen unpacked to an ELF')
  t.equal(xen[4], 1, '32-bit ELF (what QEMU\'s multiboot loader takes)')

  const files = new Set(spawnSync('cpio', ['-t', '--quiet'], { input: gunzipSync(readFileSync(img.initrd)), encoding: 'utf8', maxBuffer: 1 << 26 }).stdout.split('\n'))
  for (const f of ['init', 'bin/sh', 'usr/sbin/xl', 'usr/lib/xen-4.17/bin/xl', 'usr/lib/xen-4.17/bin/xenstored', 'usr/lib/xen-4.17/bin/xenconsoled',
    'usr/lib/xen-4.17/bin/xen-init-dom0', 'usr/sbin/sshd', 'usr/lib/openssh/sftp-server', 'lib64/ld-linux-x86-64.so.2',
    'lib/x86_64-linux-gnu/libxenlight.so.4.17', 'lib/x86_64-linux-gnu/libgcc_s.so.1', 'lib/modules/xenfs.ko', 'lib/modules/xen_netback.ko',
    'lib/modules/bridge.ko', 'lib/modules/virtio_net.ko', 'etc/ssh/sshd_config', 'etc/xen/xl.conf']) {
    t.ok(files.has(f), `initrd contains ${f}`)
  }
  t.notOk([...files].some(f => f.includes('ssh_host_') || f.includes('authorized_keys')), 'no keys in the shared image')

  const events: ProgressEvent[] = []
  t.same(await buildXenHostImage({ cacheDir, onProgress: ev => events.push(ev) }), img, 'second call: same result')
  t.same(events.map(e => e.phase), ['inputs', 'cached'], 'from the cache')

  const before = { xen: sha(img.xen), kernel: sha(img.kernel), initrd: sha(img.initrd) }
  const forced = await buildXenHostImage({ cacheDir, force: true })
  t.same(forced, img)
  t.same({ xen: sha(img.xen), kernel: sha(img.kernel), initrd: sha(img.initrd) }, before, 'forced rebuild is byte-for-byte identical')
  t.same(readdirSync(join(cacheDir, 'images')), [`xen-host-${img.id}`], 'no temp dirs left behind')
})
