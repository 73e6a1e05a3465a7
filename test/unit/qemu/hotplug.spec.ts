/**
 * What QEMU changes live in a running guest (drivers/qemu/hotplug.ts, pure): the QMP commands of
 * each edit, the plugged layout after it, what is refused and why, and that a guest launched
 * with a plugged layout (a migration's destination) has the devices the live guest got.
 */
import t from 'tap'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { buildQemuArgs } from '../../../drivers/qemu/args.ts'
import { LiveUpdateRefused, liveRefusals, liveSteps, shapeOf } from '../../../drivers/qemu/hotplug.ts'

const M = 1024 * 1024

function def (over: Partial<GuestDefinition> = {}): GuestDefinition {
  return {
    name: 'db1',
    cpus: 1,
    memoryBytes: 128 * M,
    accel: 'tcg',
    boot: { kind: 'kernel', kernel: '/img/vmlinuz', append: 'console=ttyS0' },
    disks: [{ id: 'disk-data', path: '/vms/db1/disk-data.qcow2', format: 'qcow2' }],
    nics: [{ id: 'eth0', tap: 'sct0', mac: '52:54:00:00:00:01' }],
    runDir: '/vms/db1/run',
    ...over
  }
}

const cmds = (from: GuestDefinition, to: GuestDefinition): string[] => liveSteps(from, to, 'max').steps.map(s => `${s.execute} ${JSON.stringify(s.arguments)}`)

t.test('vCPUs up: one device_add of a max-x86_64-cpu per vCPU, on the next cores', async t => {
  t.same(cmds(def(), def({ cpus: 3 })), [
    'device_add {"driver":"max-x86_64-cpu","id":"cpu1","socket-id":0,"core-id":1,"thread-id":0}',
    'device_add {"driver":"max-x86_64-cpu","id":"cpu2","socket-id":0,"core-id":2,"thread-id":0}'
  ])
  t.same(liveSteps(def(), def({ cpus: 3 }), 'max').plugged, { bootCpus: 1, bootMemoryBytes: 128 * M, dimmBytes: [], ports: {} })
})

t.test('memory up: one DIMM of the growth (a RAM backend, then the pc-dimm)', async t => {
  const r = liveSteps(def(), def({ memoryBytes: 384 * M }), 'max')
  t.same(r.steps.map(s => [s.execute, s.arguments]), [
    ['object-add', { 'qom-type': 'memory-backend-ram', id: 'mem-dimm0', size: 256 * M }],
    ['device_add', { driver: 'pc-dimm', id: 'dimm0', memdev: 'mem-dimm0' }]
  ])
  t.same(r.plugged.dimmBytes, [256 * M])
  const again = liveSteps({ ...def({ memoryBytes: 384 * M }), plugged: r.plugged }, def({ memoryBytes: 512 * M }), 'max')
  t.same(again.steps.map(s => s.arguments.id), ['mem-dimm1', 'dimm1'], 'the next step takes the next slot')
})

t.test('a disk and a NIC added: blockdev-add + virtio-blk, netdev_add + virtio-net, each on a free hot-plug port', async t => {
  const to = def({
    disks: [...def().disks, { id: 'disk-logs', path: '/vms/db1/disk-logs.qcow2', format: 'qcow2' }],
    nics: [...def().nics, { id: 'eth1', tap: 'sct1', mac: '52:54:00:00:00:02' }]
  })
  const r = liveSteps(def(), to, 'max')
  t.same(r.steps.map(s => [s.execute, s.arguments]), [
    ['blockdev-add', { driver: 'qcow2', 'node-name': 'drv-disk-logs', file: { driver: 'file', filename: '/vms/db1/disk-logs.qcow2' } }],
    ['device_add', { driver: 'virtio-blk-pci', drive: 'drv-disk-logs', id: 'disk-logs', bus: 'hp0' }],
    ['netdev_add', { type: 'tap', id: 'net-eth1', ifname: 'sct1', script: 'no', downscript: 'no' }],
    ['device_add', { driver: 'virtio-net-pci', netdev: 'net-eth1', id: 'eth1', mac: '52:54:00:00:00:02', bus: 'hp1' }]
  ])
  t.same(r.plugged.ports, { 'disk-logs': 0, eth1: 1 })
  // Removing the hot-plugged disk again: device_del (waiting for the guest to let go), then its node.
  const back = liveSteps({ ...to, plugged: r.plugged }, { ...to, disks: def().disks }, 'max')
  t.same(back.steps, [
    { execute: 'device_del', arguments: { id: 'disk-logs' }, awaitDeleted: 'disk-logs' },
    { execute: 'blockdev-del', arguments: { 'node-name': 'drv-disk-logs' } }
  ])
  t.same(back.plugged.ports, { eth1: 1 }, 'its port is free again')
})

t.test('refused, with the reason: fewer vCPUs, less memory, odd steps, beyond the headroom, a disk plugged at boot removed, no port free', async t => {
  const refusals = (from: GuestDefinition, to: GuestDefinition): string[] => liveRefusals(shapeOf(from), shapeOf(to))
  t.same(refusals(def({ cpus: 2 }), def()), ['cpus 2 -> 1: vCPUs are not unplugged live'])
  t.same(refusals(def(), def({ cpus: 9 })), ['cpus 1 -> 9: over the 8 vCPUs the guest was launched with room for'])
  t.same(refusals(def({ memoryBytes: 256 * M }), def()), ['memory 256 MiB -> 128 MiB: memory is not unplugged live (lower `allocated` to shrink it through the balloon)'])
  t.same(refusals(def(), def({ memoryBytes: 200 * M })), ['memory 128 MiB -> 200 MiB: grows live only in steps of 128 MiB'])
  t.same(refusals(def(), def({ memoryBytes: 128 * M + 4224 * M })), ['memory 128 MiB -> 4352 MiB: over the 4224 MiB the guest was launched with room for'])
  t.same(refusals(def(), def({ disks: [] })), ['disk disk-data removed: it was plugged at boot (q35\'s root bus takes no hot-unplug)'])
  const many = def({ disks: [...def().disks, ...[1, 2, 3, 4, 5].map(i => ({ id: `disk-x${i}`, path: `/x${i}`, format: 'raw' as const }))] })
  t.same(refusals(def(), many), ['5 disk(s)/NIC(s) added: 4 hot-plug port(s) free'])
  t.same(refusals(def(), def({ cpus: 8, memoryBytes: 1152 * M })), [], 'within the headroom: live')
  t.throws(() => liveSteps(def({ cpus: 2 }), def(), 'max'), LiveUpdateRefused, 'liveSteps refuses too (nothing to run)')
})

t.test('the destination of a migration is launched with what was hot-plugged, in the same places', async t => {
  const to = def({ cpus: 2, memoryBytes: 256 * M, disks: [...def().disks, { id: 'disk-logs', path: '/vms/db1/disk-logs.qcow2', format: 'qcow2' }] })
  const { plugged } = liveSteps(def(), to, 'max')
  const a = buildQemuArgs({ ...to, plugged })
  const after = (flag: string): string[] => a.flatMap((x, i) => x === flag ? [a[i + 1] ?? ''] : [])
  t.equal(after('-smp')[0], '1,sockets=1,cores=8,threads=1,maxcpus=8', 'booted with 1 vCPU, as the source was')
  t.equal(after('-m')[0], '131080K,slots=8,maxmem=4325384K', 'the boot memory of the source')
  t.same(after('-object'), [`memory-backend-ram,id=mem-dimm0,size=${128 * M}`])
  const devices = after('-device')
  t.ok(devices.includes('max-x86_64-cpu,id=cpu1,socket-id=0,core-id=1,thread-id=0'), 'the hot-plugged vCPU')
  t.ok(devices.includes('pc-dimm,id=dimm0,memdev=mem-dimm0'), 'the DIMM')
  t.ok(devices.includes('virtio-blk-pci,drive=drv-disk-logs,id=disk-logs,bus=hp0'), 'the disk on its port')
  t.ok(devices.includes('virtio-blk-pci,drive=drv-disk-data,id=disk-data'), 'the disk plugged at boot on the root bus')
  t.throws(() => buildQemuArgs({ ...to, plugged: { ...plugged, dimmBytes: [] } }), /plugged: boot memory/, 'a layout that does not add up is refused')
})
