import t from 'tap'
import type { GuestDefinition } from '../../../drivers/hypervisor.ts'
import { parseXlInfo, parseXlList, parseXlListLong, xenAccelReason, xenCmdline, xenDomainPlan, XenGuestDefinitionError, xlState, guestCpuAffinity, xenDiskName, xenSwapLink } from '../../../drivers/xen/config.ts'

const MiB = 1024 * 1024
const base: GuestDefinition = {
  name: 'g1', cpus: 2, memoryBytes: 256 * MiB, accel: 'xen',
  boot: { kind: 'kernel', kernel: '/img/vmlinuz', initrd: '/img/initrd.img', append: 'console=ttyS0 sc.name=g1 sc.net=eth0:198.18.0.5/24' },
  disks: [], nics: [], runDir: '/run/sc/g1'
}

t.test('xl config for a PVH guest: memory = maxmem, hvc0 console, native TSC', async t => {
  const p = xenDomainPlan(base, () => 'xenbr0')
  t.equal(p.config, [
    'name = "g1"',
    'type = "pvh"',
    'kernel = "/img/vmlinuz"',
    'ramdisk = "/img/initrd.img"',
    'cmdline = "console=hvc0 sc.name=g1 sc.net=eth0:198.18.0.5/24 pci=off"',
    'memory = 256',
    'maxmem = 256',
    'vcpus = 2',
    'vif = []',
    'disk = []',
    'tsc_mode = "native"',
    'on_poweroff = "destroy"',
    'on_reboot = "restart"',
    'on_crash = "preserve"',
    ''
  ].join('\n'))
  t.equal(p.balloonMiB, undefined)
})

t.test('NICs become vifs named after the tap, in the tap\'s bridge', async t => {
  const def = { ...base, nics: [{ id: 'eth0', tap: 'sc1t0', mac: '02:FC:00:00:00:01', mtu: 1400 }, { id: 'eth1', tap: 'sc1t1', mac: '02:fc:00:00:00:02' }] }
  const p = xenDomainPlan(def, tap => tap === 'sc1t0' ? 'vwbr0' : 'xenbr0')
  t.match(p.config, /^vif = \["vifname=sc1t0,bridge=vwbr0,mac=02:fc:00:00:00:01,mtu=1400", "vifname=sc1t1,bridge=xenbr0,mac=02:fc:00:00:00:02"\]$/m)
  t.same(p.vifs.map(v => v.name), ['sc1t0', 'sc1t1'])
})

t.test('balloon target below memory is applied after create; ignored for an incoming guest', async t => {
  t.equal(xenDomainPlan({ ...base, balloonTargetBytes: 100 * MiB + 5 }, () => 'xenbr0').balloonMiB, 100)
  t.equal(xenDomainPlan({ ...base, balloonTargetBytes: 256 * MiB }, () => 'xenbr0').balloonMiB, undefined)
  t.equal(xenDomainPlan({ ...base, balloonTargetBytes: 100 * MiB, incoming: true }, () => 'xenbr0').balloonMiB, undefined)
})

t.test('raw disks as xvdX through blkback, the swap disk after them on its NBD link; what Xen guests cannot have is refused', async t => {
  const p = xenDomainPlan({ ...base, disks: [{ id: 'a', path: '/var/a.img', format: 'raw' }, { id: 'b', path: '/var/b.img', format: 'raw' }] }, () => 'xenbr0')
  t.match(p.config, /^disk = \["format=raw,vdev=xvda,access=rw,backendtype=phy,target=\/var\/a.img", "format=raw,vdev=xvdb,access=rw,backendtype=phy,target=\/var\/b.img"\]$/m)
  const sw = xenDomainPlan({ ...base, runDir: '/run/sc/g1', disks: [{ id: 'a', path: '/var/a.img', format: 'raw' }], swap: { socketPath: '/run/sc/g1/swap.sock' } }, () => 'xenbr0')
  t.match(sw.config, /^disk = \[.*"format=raw,vdev=xvdb,access=rw,backendtype=phy,target=\/run\/sc\/g1\/swap.nbd"\]$/m, 'swap is the next xvd, backed by <runDir>/swap.nbd')
  t.equal(xenDiskName(1), '/dev/xvdb', 'the guest sees the swap disk as xenDiskName(disks.length)')
  t.equal(xenSwapLink('/run/sc/g1'), '/run/sc/g1/swap.nbd')
  t.throws(() => xenDiskName(26), RangeError)
  t.throws(() => xenDomainPlan({ ...base, swap: { socketPath: 'rel.sock' } }, () => 'xenbr0'), /swap socket path must be absolute/)
  t.throws(() => xenDomainPlan({ ...base, runDir: '/run/a b', swap: { socketPath: '/x' } }, () => 'xenbr0'), /run directory/)
  const many = (n: number): GuestDefinition['disks'] => Array.from({ length: n }, (_, i) => ({ id: `d${i}`, path: `/var/d${i}.img`, format: 'raw' as const }))
  t.match(xenDomainPlan({ ...base, disks: many(26) }, () => 'xenbr0').config, /vdev=xvdz,/, '26 disks: xvda to xvdz')
  t.throws(() => xenDomainPlan({ ...base, disks: many(27) }, () => 'xenbr0'), /at most 26 disks/)
  t.throws(() => xenDomainPlan({ ...base, disks: many(26), swap: { socketPath: '/x' } }, () => 'xenbr0'), /at most 25 disks with a swap disk/)
  t.throws(() => xenDomainPlan({ ...base, swap: { socketPath: '/x' }, incoming: true }, () => 'xenbr0'), /cannot arrive by migration/)
  t.match(xenDomainPlan(base, () => 'xenbr0', { cpuid: 'host,xsave=0' }).config, /^cpuid = "host,xsave=0"$/m, 'a guest CPUID policy becomes cpuid=')
  t.notMatch(xenDomainPlan(base, () => 'xenbr0').config, /^cpuid/m, 'none by default')
  t.throws(() => xenDomainPlan(base, () => 'xenbr0', { cpuid: 'host" evil' }), /CPUID policy/)
  t.throws(() => xenDomainPlan({ ...base, disks: [{ id: 'a', path: '/a.qcow2', format: 'qcow2' }] }, () => 'xenbr0'), XenGuestDefinitionError)
  t.throws(() => xenDomainPlan({ ...base, boot: { kind: 'disk' } }, () => 'xenbr0'), /disk boot is not supported/)
  t.throws(() => xenDomainPlan({ ...base, memoryBytes: 256 * MiB + 1 }, () => 'xenbr0'), /whole number of MiB/)
  t.throws(() => xenDomainPlan({ ...base, name: 'Bad_Name' }, () => 'xenbr0'), { code: 'SC_GUEST_DEFINITION' })
  t.throws(() => xenDomainPlan({ ...base, boot: { kind: 'kernel', kernel: '/k', append: 'a"b' } }, () => 'xenbr0'), /quotes/)
  t.throws(() => xenDomainPlan({ ...base, nics: [{ id: 'e', tap: 'way-too-long-interface', mac: '02:00:00:00:00:01' }] }, () => 'xenbr0'), /interface name/)
})

t.test('console words', async t => {
  t.equal(xenCmdline('console=ttyS0,115200 quiet  sc.name=a'), 'console=hvc0 quiet sc.name=a pci=off')
  t.equal(xenCmdline(''), 'console=hvc0 pci=off')
  t.equal(xenCmdline('pci=noearly sc.name=a'), 'console=hvc0 pci=noearly sc.name=a', 'a pci= word of the definition stands')
})

t.test('xl list, xl list -l, xl info', async t => {
  const rows = parseXlList('Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0   384     1     r-----      41.7\ng1                                           1   128     1     -b----       0.6\n')
  t.same(rows, [
    { name: 'Domain-0', domid: 0, memMiB: 384, vcpus: 1, flags: 'r-----' },
    { name: 'g1', domid: 1, memMiB: 128, vcpus: 1, flags: '-b----' }
  ])
  t.equal(xlState('r-----'), 'running')
  t.equal(xlState('-b----'), 'running')
  t.equal(xlState('------'), 'running')
  t.equal(xlState('--p---'), 'paused')
  t.equal(xlState('---s--'), 'shutdown')
  t.equal(xlState('---sc-'), 'other')
  t.equal(xlState('-----d'), 'other')
  t.equal(xlState('---ss-'), 'paused', 'shut down for suspend: a live migration\'s last round')
  t.equal(xlState('---sr-'), 'shutdown', 'shut down for reboot')
  const long = parseXlListLong(JSON.stringify([{ domid: 3, config: { c_info: { type: 'pvh', name: 'g1' }, b_info: { max_memkb: 262144, target_memkb: 131072 } } }]))
  t.same(long, [{ domid: 3, name: 'g1', type: 'pvh', maxMemKb: 262144, targetMemKb: 131072 }])
  t.throws(() => parseXlListLong('not json'), { code: 'SC_XEN_XL' })
  const info = parseXlInfo('host                   : xen1\nxen_major              : 4\nxen_minor              : 17\nxen_extra              : .7\nvirt_caps              : pv hvm hap\n')
  t.equal(info.host, 'xen1')
  t.same(xenAccelReason(info), { ok: true, reason: 'Xen 4.17.7, virt_caps: pv hvm hap (PVH guests with HAP)' })
  t.equal(xenAccelReason({ ...info, virt_caps: 'pv' }).ok, false)
})

t.test('guest overlay: /init read from a newc archive, shell moved to hvc0', async t => {
  const { writeNewc } = await import('../../../images/guest/cpio.ts')
  const { readNewcFile, xenGuestInit } = await import('../../../images/xen-host/guest-overlay.ts')
  const a = writeNewc([{ type: 'file', path: 'init', data: Buffer.from('#!/bin/sh\nttyS0::respawn:-/bin/sh\n') }, { type: 'dir', path: 'etc' }])
  const b = writeNewc([{ type: 'file', path: 'init', data: Buffer.from('second') }])
  t.equal(readNewcFile(a, 'init')?.toString(), '#!/bin/sh\nttyS0::respawn:-/bin/sh\n')
  t.equal(readNewcFile(Buffer.concat([a, b]), 'init')?.toString(), 'second', 'the later archive wins, as in the kernel')
  t.equal(readNewcFile(a, 'etc'), undefined, 'directories are not files')
  t.equal(xenGuestInit('x\nttyS0::respawn:-/bin/sh\n::ctrlaltdel:/sbin/reboot\n'), 'x\nhvc0::respawn:-/bin/sh\n::ctrlaltdel:/sbin/reboot\n')
  t.throws(() => xenGuestInit('no shell line'), /ttyS0::respawn/)
})

t.test('guests stay off dom0\'s CPU when the host has more than one', async t => {
  t.equal(guestCpuAffinity(1), undefined, 'one CPU: no affinity (nothing to keep apart)')
  t.equal(guestCpuAffinity(2), '1')
  t.equal(guestCpuAffinity(8), '1-7')
  t.notMatch(xenDomainPlan(base, () => 'xenbr0').config, /^cpus = /m, 'no affinity line by default')
  t.match(xenDomainPlan(base, () => 'xenbr0', { cpus: '1' }).config, /^cpus = "1"$/m, 'the affinity goes into the domain config')
})
