import t, { type Test } from 'tap'
import { readFileSync, existsSync, readdirSync } from 'node:fs'
import {
  compareKernelVersions, moduleName, newestKernelVersion, parseModulesBuiltin, parseModulesDep, resolveModules
} from '../../../images/guest/modules.ts'
import { GUEST_MODULES } from '../../../images/guest/build.ts'

// An excerpt of Debian 6.1's modules.dep (deps listed in modprobe's order).
const DEP = `
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
`

function assertDepsFirst (t: Test, order: Array<{ name: string }>, dep: ReturnType<typeof parseModulesDep>): void {
  const pos = new Map(order.map((m, i) => [m.name, i]))
  for (const m of order) {
    for (const d of dep.get(m.name)?.deps ?? []) {
      const dp = pos.get(d)
      t.ok(dp !== undefined && dp < (pos.get(m.name) ?? -1), `${d} loads before ${m.name}`)
    }
  }
}

t.test('module names fold compression suffixes and dashes', async t => {
  t.equal(moduleName('kernel/drivers/block/virtio_blk.ko.xz'), 'virtio_blk')
  t.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng')
  t.equal(moduleName('virtio_net.ko.zst'), 'virtio_net')
  t.equal(moduleName('failover'), 'failover')
})

t.test('parse modules.dep', async t => {
  const dep = parseModulesDep(DEP)
  t.equal(dep.size, 10)
  t.same(dep.get('virtio_net'), {
    path: 'kernel/drivers/net/virtio_net.ko',
    deps: ['net_failover', 'failover', 'virtio', 'virtio_ring']
  })
  t.same(dep.get('virtio_ring')?.deps, [])
  t.equal(dep.get('virtio_blk')?.path, 'kernel/drivers/block/virtio_blk.ko.xz')
})

t.test('resolve: dependencies first, each once', async t => {
  const dep = parseModulesDep(DEP)
  const order = resolveModules(dep, ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio-rng'])
  t.same(order.map(m => m.name), [
    'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_ring', 'virtio', 'virtio_pci',
    'failover', 'net_failover', 'virtio_net', 'virtio_blk', 'virtio_rng'
  ])
  assertDepsFirst(t, order, dep)
  t.equal(order.find(m => m.name === 'virtio_blk')?.path, 'kernel/drivers/block/virtio_blk.ko.xz')
})

t.test('resolve: builtins are skipped, unknown modules are an error', async t => {
  const dep = parseModulesDep(DEP)
  const builtin = parseModulesBuiltin('kernel/net/unix/unix.ko\nkernel/drivers/virtio/virtio_anchor.ko\n')
  t.same(resolveModules(dep, ['unix'], builtin), [])
  t.throws(() => resolveModules(dep, ['virtio_scsi'], builtin), { name: 'UnknownModuleError', module: 'virtio_scsi' })
  const broken = parseModulesDep('kernel/a.ko: kernel/missing.ko\n')
  t.throws(() => resolveModules(broken, ['a']), { message: /missing.*needed by a/ })
})

t.test('resolve: tolerates a dependency cycle without looping', async t => {
  const dep = parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n')
  t.same(resolveModules(dep, ['a']).map(m => m.name), ['b', 'a'])
})

t.test('newest kernel in /boot', async t => {
  t.equal(newestKernelVersion(['config-6.1.0-56-amd64', 'vmlinuz-6.1.0-9-amd64', 'vmlinuz-6.1.0-56-amd64', 'initrd.img-6.1.0-56-amd64']), '6.1.0-56-amd64')
  t.equal(newestKernelVersion(['vmlinuz-5.10.0-30-amd64', 'vmlinuz-6.1.0-1-amd64']), '6.1.0-1-amd64')
  t.equal(newestKernelVersion(['System.map-6.1.0-56-amd64']), undefined)
  t.ok(compareKernelVersions('6.10.0', '6.9.0') > 0)
  t.equal(compareKernelVersions('6.1.0-56-amd64', '6.1.0-56-amd64'), 0)
})

// The real index on this machine (read-only): the guest's module set resolves completely.
const bootVersion = existsSync('/boot') ? newestKernelVersion(readdirSync('/boot')) : undefined
const depPath = bootVersion !== undefined ? `/lib/modules/${bootVersion}/modules.dep` : ''
t.test('the installed kernel provides every guest module', { skip: depPath === '' || !existsSync(depPath) ? 'no kernel modules installed' : false }, async t => {
  const dep = parseModulesDep(readFileSync(depPath, 'utf8'))
  const order = resolveModules(dep, ['virtio_pci', 'virtio_net', 'virtio_blk', 'virtio_balloon', 'virtio_console'])
  const names = order.map(m => m.name)
  for (const n of ['virtio_ring', 'virtio', 'virtio_pci', 'virtio_net', 'net_failover', 'failover', 'virtio_blk']) t.ok(names.includes(n), n)
  assertDepsFirst(t, order, dep)
})

t.test('GUEST_MODULES includes 802.1Q with its dependencies, loaded first', { skip: depPath === '' || !existsSync(depPath) ? 'no kernel modules installed' : false }, async t => {
  t.ok(GUEST_MODULES.includes('8021q'), 'the image loads 8021q')
  const dep = parseModulesDep(readFileSync(depPath, 'utf8'))
  const order = resolveModules(dep, GUEST_MODULES)
  const names = order.map(m => m.name)
  for (const n of ['8021q', 'garp', 'mrp', 'stp', 'llc']) t.ok(names.includes(n), `${n} is in the image`)
  assertDepsFirst(t, order, dep)
})
