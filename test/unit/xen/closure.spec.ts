import t from 'tap'
import { MissingLibraryError, parseLdd, unionSorted } from '../../../images/xen-host/closure.ts'
import { newestXen } from '../../../images/xen-host/build.ts'

const XL = `	linux-vdso.so.1 (0x00007ffd5c1f2000)
	libxenlight.so.4.17 => /lib/x86_64-linux-gnu/libxenlight.so.4.17 (0x00007f7453400000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f745333d000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f745359e000)
`

t.test('ldd output gives the libraries and the loader, not the vDSO', async t => {
  t.same(parseLdd(XL), ['/lib/x86_64-linux-gnu/libxenlight.so.4.17', '/lib/x86_64-linux-gnu/libc.so.6', '/lib64/ld-linux-x86-64.so.2'])
})

t.test('static binaries have no closure', async t => {
  t.same(parseLdd('\tnot a dynamic executable\n'), [])
  t.same(parseLdd('\tstatically linked\n'), [])
})

t.test('a missing library is an error naming it', async t => {
  t.throws(() => parseLdd('\tlibyajl.so.2 => not found\n'), MissingLibraryError)
  t.throws(() => parseLdd('\tlibyajl.so.2 => not found\n'), /libyajl\.so\.2/)
})

t.test('union is deduplicated and byte-wise sorted', async t => {
  t.same(unionSorted([['/b', '/a'], ['/a', '/C']]), ['/C', '/a', '/b'])
})

t.test('newest Xen in /boot', async t => {
  t.same(newestXen(['vmlinuz-6.1.0-56-amd64', 'xen-4.17-amd64.gz', 'xen-4.17-amd64.efi', 'xen-4.9-amd64.gz']), { version: '4.17', file: 'xen-4.17-amd64.gz' })
  t.equal(newestXen(['vmlinuz-6.1.0-56-amd64']), undefined)
})

t.test('guest overlay loads the Xen front-ends after the image\'s own modules', async t => {
  const { xenGuestOverlayCpio } = await import('../../../images/xen-host/guest-overlay.ts')
  const { spawnSync } = await import('node:child_process')
  const cpio = (xenGuestOverlayCpio(['virtio', 'virtio_net'], [{ name: 'xen_netfront', data: Buffer.from('KO') }]))
  const listing = spawnSync('cpio', ['-t', '--quiet'], { input: cpio, encoding: 'utf8' }).stdout.split('\n')
  t.ok(listing.includes('lib/modules/xen_netfront.ko'))
  t.ok(cpio.includes(Buffer.from('virtio\nvirtio_net\nxen_netfront\n')), 'module list: base first, then the front-end')
})
