import t from 'tap'
import { initramfsEntries } from '../../../images/lib/initramfs.ts'

const root = initramfsEntries({
  dirs: ['bin', 'tmp', 'root', 'etc'],
  init: Buffer.from('#!/bin/sh\n'),
  busybox: Buffer.from('BB'),
  own: [{ type: 'file', path: 'bin/netprobe', data: Buffer.from('NP'), mode: 0o755 }, { type: 'symlink', path: 'sbin/ip', target: '/usr/bin/ip' }],
  applets: ['/bin/sh', '/sbin/ip', '/bin/busybox', '/linuxrc', '/bin/netprobe', '', '/bin/sh'],
  modules: [{ name: 'virtio_pci', data: Buffer.from('A') }, { name: 'virtio_net', data: Buffer.from('B') }],
  extra: [{ type: 'file', path: 'etc/passwd', data: Buffer.from('root:x:0:0::/root:/bin/sh\n') }]
})
const byPath = new Map(root.map(e => [e.path, e]))

t.test('directory modes: tmp sticky, root private, others 0755', async t => {
  t.match(byPath.get('tmp'), { type: 'dir', mode: 0o1777 })
  t.match(byPath.get('root'), { type: 'dir', mode: 0o700 })
  t.match(byPath.get('bin'), { type: 'dir', mode: 0o755 })
})

t.test('console, null, init and busybox', async t => {
  t.match(byPath.get('dev/console'), { type: 'chardev', major: 5, minor: 1 })
  t.match(byPath.get('dev/null'), { type: 'chardev', major: 1, minor: 3, mode: 0o666 })
  t.match(byPath.get('init'), { type: 'file', mode: 0o755 })
  t.match(byPath.get('bin/busybox'), { type: 'file', mode: 0o755 })
})

t.test('one symlink per applet; never over busybox, init, linuxrc or the recipe\'s own entries', async t => {
  t.same(root.filter(e => e.type === 'symlink' && e.target === '/bin/busybox').map(e => e.path), ['bin/sh'])
  t.match(byPath.get('sbin/ip'), { type: 'symlink', target: '/usr/bin/ip' })
  t.match(byPath.get('bin/netprobe'), { type: 'file' })
  t.equal(new Set(root.map(e => e.path)).size, root.length, 'no path twice')
})

t.test('modules as lib/modules/<name>.ko, their order in etc/sc-modules; extra entries kept', async t => {
  t.ok(byPath.has('lib/modules/virtio_pci.ko'))
  t.ok(byPath.has('lib/modules/virtio_net.ko'))
  const list = byPath.get('etc/sc-modules')
  t.equal(list?.type === 'file' ? Buffer.from(list.data).toString() : '', 'virtio_pci\nvirtio_net\n')
  t.ok(byPath.has('etc/passwd'))
})
