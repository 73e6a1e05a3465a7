import t from 'tap'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { buildQemuArgs, memoryMiB, qemuOptValue, runPaths, TCG_RAM_PAD_BYTES, validateDefinition } from '../../../drivers/qemu/args.ts'
import { cleanConsoleText, lastLines } from '../../../drivers/qemu/console-text.ts'
import { GuestDefinitionError } from '../../../drivers/qemu/errors.ts'

const MiB = 1024 * 1024

function def (over: Partial<GuestDefinition> = {}): GuestDefinition {
  return {
    name: 'web1',
    cpus: 2,
    memoryBytes: 512 * MiB,
    accel: 'tcg',
    boot: { kind: 'kernel', kernel: '/img/vmlinuz', initrd: '/img/initrd.img', append: 'console=ttyS0 sc.name=web1' },
    disks: [],
    nics: [],
    runDir: '/var/lib/sc/vms/web1/run',
    ...over
  }
}

/** Value following the n-th occurrence of `flag`. */
function after (argv: string[], flag: string, nth = 0): string | undefined {
  let seen = 0
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === flag) {
      if (seen === nth) return argv[i + 1]
      seen++
    }
  }
  return undefined
}
function all (argv: string[], flag: string): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) if (argv[i] === flag) out.push(argv[i + 1] ?? '')
  return out
}

t.test('run paths all derive from runDir', async t => {
  t.same(runPaths('/r'), { runDir: '/r', pidfile: '/r/qemu.pid', qmp: '/r/qmp.sock', qmpMigration: '/r/qmp-mig.sock', serial: '/r/serial.sock', consoleLog: '/r/console.log', qemuLog: '/r/qemu.log' })
})

t.test('TCG kernel-boot guest', async t => {
  const a = buildQemuArgs(def())
  t.equal(after(a, '-name'), 'guest=web1')
  t.equal(after(a, '-machine'), 'q35,accel=tcg')
  t.equal(after(a, '-cpu'), 'max')
  t.equal(after(a, '-smp'), '2,sockets=1,cores=8,threads=1,maxcpus=8', '2 vCPUs, room to hot-plug up to 8')
  // 512 MiB + 8 KiB: a RAM block that is not a multiple of 64 pages keeps QEMU 7.2's TCG dirty
  // tracking exact during migration (see TCG_RAM_PAD_BYTES).
  t.equal(after(a, '-m'), '524296K,slots=8,maxmem=4718600K', 'room for 8 DIMMs, 4 GiB more')
  t.not(((512 * 1024 * 1024 + TCG_RAM_PAD_BYTES) / 4096) % 64, 0, 'the RAM block is not a multiple of 64 pages')
  t.ok(a.includes('-nodefaults'))
  t.ok(a.includes('-no-user-config'))
  t.equal(after(a, '-display'), 'none')
  t.notOk(a.includes('-daemonize'), 'runs in the foreground; the backend detaches it')
  t.notOk(a.includes('-nographic'), '-nographic would grab stdio')
  t.equal(after(a, '-pidfile'), '/var/lib/sc/vms/web1/run/qemu.pid')
  t.equal(after(a, '-chardev', 0), 'socket,id=qmp0,path=/var/lib/sc/vms/web1/run/qmp.sock,server=on,wait=off')
  t.equal(after(a, '-mon'), 'chardev=qmp0,mode=control')
  t.equal(after(a, '-chardev', 1), 'socket,id=ser0,path=/var/lib/sc/vms/web1/run/serial.sock,server=on,wait=off,logfile=/var/lib/sc/vms/web1/run/console.log,logappend=on')
  t.equal(after(a, '-serial'), 'chardev:ser0')
  t.same(all(a, '-device'), ['virtio-balloon-pci,id=balloon0', ...[0, 1, 2, 3].map(i => `pcie-root-port,id=hp${i},chassis=${i + 1},bus=pcie.0,addr=0x1${i}`)], 'the balloon, and 4 empty PCIe ports for hot-plugged disks and NICs')
  t.equal(after(a, '-kernel'), '/img/vmlinuz')
  t.equal(after(a, '-initrd'), '/img/initrd.img')
  t.equal(after(a, '-append'), 'console=ttyS0 sc.name=web1 memhp_default_state=online swiotlb=noforce', 'append is one argv element, spaces kept; hot-plugged memory onlines itself')
  t.notOk(a.includes('-netdev'))
  t.notOk(a.includes('-blockdev'))
})

t.test('KVM uses the host CPU; machine and TCG CPU can be chosen', async t => {
  const k = buildQemuArgs(def({ accel: 'kvm' }))
  t.equal(after(k, '-machine'), 'q35,accel=kvm')
  t.equal(after(k, '-cpu'), 'host')
  t.equal(after(k, '-m'), '512,slots=8,maxmem=4608', 'KVM tracks dirty pages itself: whole MiB')
  const p = buildQemuArgs(def(), { machine: 'pc', tcgCpu: 'qemu64' })
  t.equal(after(p, '-machine'), 'pc,accel=tcg')
  t.equal(after(p, '-cpu'), 'qemu64')
})

t.test('kernel boot without initrd', async t => {
  const a = buildQemuArgs(def({ boot: { kind: 'kernel', kernel: '/boot/vmlinuz', append: 'console=ttyS0 panic=-1' } }))
  t.notOk(a.includes('-initrd'))
  t.equal(after(a, '-append'), 'console=ttyS0 panic=-1 memhp_default_state=online swiotlb=noforce')
})

t.test('disks become blockdevs + virtio-blk devices; disk boot marks the first bootable', async t => {
  const a = buildQemuArgs(def({
    boot: { kind: 'disk' },
    disks: [
      { id: 'root', path: '/vms/web1/root.qcow2', format: 'qcow2' },
      { id: 'disk-data', path: '/vms/web1/data.raw', format: 'raw' }
    ]
  }))
  t.same(all(a, '-blockdev'), [
    'driver=qcow2,node-name=drv-root,file.driver=file,file.filename=/vms/web1/root.qcow2',
    'driver=raw,node-name=drv-disk-data,file.driver=file,file.filename=/vms/web1/data.raw'
  ])
  t.same(all(a, '-device').slice(5), [
    'virtio-blk-pci,drive=drv-root,id=root,bootindex=0',
    'virtio-blk-pci,drive=drv-disk-data,id=disk-data'
  ])
  t.notOk(a.includes('-kernel'))
  t.notOk(a.includes('-append'))
  const k = buildQemuArgs(def({ disks: [{ id: 'swap', path: '/s.qcow2', format: 'qcow2' }] }))
  t.same(all(k, '-device').slice(5), ['virtio-blk-pci,drive=drv-swap,id=swap'], 'no bootindex with kernel boot')
})

t.test('NICs are tap netdevs + virtio-net with mac and optional host_mtu', async t => {
  const a = buildQemuArgs(def({
    nics: [
      { id: 'eth0', tap: 'sct1a2b-t0', mac: '52:54:00:AA:00:01' },
      { id: 'eth1', tap: 'sct1a2b-t1', mac: '52:54:00:aa:00:02', mtu: 1450 }
    ]
  }))
  t.same(all(a, '-netdev'), [
    'tap,id=net-eth0,ifname=sct1a2b-t0,script=no,downscript=no',
    'tap,id=net-eth1,ifname=sct1a2b-t1,script=no,downscript=no'
  ])
  t.same(all(a, '-device').slice(5), [
    'virtio-net-pci,netdev=net-eth0,id=eth0,mac=52:54:00:aa:00:01',
    'virtio-net-pci,netdev=net-eth1,id=eth1,mac=52:54:00:aa:00:02,host_mtu=1450'
  ])
})

t.test('commas in paths are escaped inside option values only', async t => {
  t.equal(qemuOptValue('/a,b,,c'), '/a,,b,,,,c')
  const a = buildQemuArgs(def({
    runDir: '/tmp/we,ird',
    boot: { kind: 'kernel', kernel: '/k,1', append: 'a,b' },
    disks: [{ id: 'd', path: '/x,y.qcow2', format: 'qcow2' }]
  }))
  t.match(after(a, '-chardev', 0), /path=\/tmp\/we,,ird\/qmp\.sock,/)
  t.match(after(a, '-chardev', 1), /logfile=\/tmp\/we,,ird\/console\.log,/)
  t.match(after(a, '-blockdev'), /file\.filename=\/x,,y\.qcow2$/)
  t.equal(after(a, '-kernel'), '/k,1', '-kernel is a plain path')
  t.equal(after(a, '-append'), 'a,b memhp_default_state=online swiotlb=noforce', '-append is a plain string')
  t.equal(after(a, '-pidfile'), '/tmp/we,ird/qemu.pid', '-pidfile is a plain path')
})

t.test('memory must be whole MiB', async t => {
  t.equal(memoryMiB({ name: 'x', memoryBytes: 2048 * MiB }), 2048)
  t.throws(() => memoryMiB({ name: 'x', memoryBytes: 512 * MiB + 1 }), GuestDefinitionError)
  t.throws(() => memoryMiB({ name: 'x', memoryBytes: 0 }), GuestDefinitionError)
})

t.test('invalid definitions are rejected with GuestDefinitionError naming the problem', async t => {
  const cases: Array<[string, Partial<GuestDefinition>, RegExp]> = [
    ['bad name', { name: 'web 1' }, /name 'web 1'/],
    ['name with comma', { name: 'a,b' }, /name 'a,b'/],
    ['zero cpus', { cpus: 0 }, /cpus must be/],
    ['fractional cpus', { cpus: 1.5 }, /cpus must be/],
    ['odd memory', { memoryBytes: 1000 }, /whole number of MiB/],
    ['balloon above memory', { balloonTargetBytes: 1024 * MiB }, /exceeds memory/],
    ['relative runDir', { runDir: 'run' }, /absolute/],
    ['socket path too long', { runDir: '/' + 'x'.repeat(100) }, /longer than 107 bytes/],
    ['disk boot without disks', { boot: { kind: 'disk' } }, /at least one disk/],
    ['bad disk id', { disks: [{ id: '0root', path: '/r', format: 'qcow2' }] }, /disk id '0root'/],
    ['relative disk path', { disks: [{ id: 'root', path: 'r.qcow2', format: 'qcow2' }] }, /path must be absolute/],
    ['duplicate ids', { disks: [{ id: 'a', path: '/a', format: 'raw' }], nics: [{ id: 'a', tap: 't', mac: '52:54:00:00:00:01' }] }, /duplicate device id 'a'/],
    ['long tap', { nics: [{ id: 'n', tap: 'a-very-long-tap-name', mac: '52:54:00:00:00:01' }] }, /tap name/],
    ['bad mac', { nics: [{ id: 'n', tap: 't0', mac: '52:54:00:00:01' }] }, /mac '52:54:00:00:01'/],
    ['bad mtu', { nics: [{ id: 'n', tap: 't0', mac: '52:54:00:00:00:01', mtu: 10 }] }, /mtu must be/]
  ]
  for (const [what, over, msg] of cases) {
    const err = (() => { try { validateDefinition(def(over)); return undefined } catch (e) { return e } })()
    t.ok(err instanceof GuestDefinitionError, `${what}: GuestDefinitionError`)
    t.match((err as Error).message, msg, `${what}: message`)
    t.equal((err as GuestDefinitionError).code, 'SC_GUEST_DEFINITION')
    t.throws(() => buildQemuArgs(def(over)), GuestDefinitionError, `${what}: buildQemuArgs validates too`)
  }
  t.doesNotThrow(() => validateDefinition(def({ balloonTargetBytes: 256 * MiB })))
})

t.test('console text cleaning and tail', async t => {
  t.equal(cleanConsoleText('a\r\nb\x1b[6n\x1b[0mc\r\n\x07'), 'a\nbc\n')
  t.equal(lastLines('1\r\n2\r\n3\r\n4\r\n\r\n', 2), '3\n4')
  t.equal(lastLines('only', 5), 'only')
  t.equal(lastLines('x\ny', 0), '')
})

t.test('a second QMP monitor for migration, and -incoming defer for a migration target', async t => {
  const a = buildQemuArgs({ ...def(), incoming: true })
  t.ok(a.includes('socket,id=qmp1,path=/var/lib/sc/vms/web1/run/qmp-mig.sock,server=on,wait=off'))
  t.ok(a.includes('chardev=qmp1,mode=control'))
  t.same(a.slice(-2), ['-incoming', 'defer'])
  t.notOk(buildQemuArgs(def()).includes('-incoming'), 'only when incoming')
})
