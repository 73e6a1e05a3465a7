/** The NBD-backed swap disk in the QEMU command line (drivers/qemu/args.ts). */
import t from 'tap'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { buildQemuArgs, virtioDiskName } from '../../../drivers/qemu/args.ts'
import { GuestDefinitionError } from '../../../drivers/qemu/errors.ts'

const MiB = 1024 * 1024
const def = (over: Partial<GuestDefinition> = {}): GuestDefinition => ({
  name: 'web1', cpus: 1, memoryBytes: 256 * MiB, balloonTargetBytes: 128 * MiB, accel: 'tcg',
  boot: { kind: 'kernel', kernel: '/img/vmlinuz', append: 'console=ttyS0' },
  disks: [{ id: 'disk-data', path: '/var/sc/vms/web1/disk-data.qcow2', format: 'qcow2' }],
  nics: [], runDir: '/var/sc/vms/web1/run', ...over
})

t.test('virtio disk names follow plug order', async t => {
  t.equal(virtioDiskName(0), '/dev/vda')
  t.equal(virtioDiskName(1), '/dev/vdb')
  t.equal(virtioDiskName(25), '/dev/vdz')
  t.equal(virtioDiskName(26), '/dev/vdaa')
  t.throws(() => virtioDiskName(-1), RangeError)
})

t.test('swap disk: an nbd blockdev on the unix socket, attached after the data disks', async t => {
  const a = buildQemuArgs(def({ swap: { socketPath: '/var/sc/vms/web1/swap.sock' } }))
  const blockdevs = a.flatMap((x, i) => x === '-blockdev' ? [a[i + 1] ?? ''] : [])
  t.equal(blockdevs.length, 2)
  t.match(blockdevs[0], /node-name=drv-disk-data/, 'data disk first')
  t.same(JSON.parse(blockdevs[1] ?? '{}'), { driver: 'nbd', 'node-name': 'drv-swap0', server: { type: 'unix', path: '/var/sc/vms/web1/swap.sock' }, export: 'swap', 'reconnect-delay': 30, discard: 'unmap' }, 'discards reach the swap server (freed slots release repository pages)')
  const devices = a.flatMap((x, i) => x === '-device' && (a[i + 1] ?? '').startsWith('virtio-blk') ? [a[i + 1]] : [])
  t.same(devices, ['virtio-blk-pci,drive=drv-disk-data,id=disk-data', 'virtio-blk-pci,drive=drv-swap0,id=swap0'], 'so the guest sees it as /dev/vdb')
})

t.test('no swap: no nbd blockdev', async t => {
  t.notOk(buildQemuArgs(def()).some(x => x.includes('"nbd"')))
})

t.test('a relative or too long swap socket path is refused', async t => {
  t.throws(() => buildQemuArgs(def({ swap: { socketPath: 'swap.sock' } })), GuestDefinitionError)
  t.throws(() => buildQemuArgs(def({ swap: { socketPath: '/' + 'x'.repeat(120) } })), GuestDefinitionError)
})
