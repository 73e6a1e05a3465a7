import t from 'tap'
import { spawnSync } from 'node:child_process'
import { gunzipSync } from 'node:zlib'
import { LocalDriverError } from '../../../core/errors.ts'
import {
  dom0Cmdline, launchCpio, multibootModules, readyState, xenCmdline, xenHostMac, xenHostQemuArgs, type XenHostVmConfig
} from '../../../drivers/local/xen-host-args.ts'

const base: XenHostVmConfig = {
  name: 'xen1',
  prefix: 'sct1a2b',
  xen: '/cache/xen-host-abc/xen',
  kernel: '/cache/xen-host-abc/vmlinuz',
  initrd: '/run/xen1/initrd.img',
  tap: 'sct1a2bxen0',
  address: '198.18.240.2/24',
  gateway: '198.18.240.1',
  consoleLog: '/run/xen1/console.log'
}

const argAfter = (args: string[], flag: string): string | undefined => args[args.indexOf(flag) + 1]

t.test('QEMU runs Xen as the multiboot kernel with dom0 kernel + initramfs as modules', async t => {
  const args = xenHostQemuArgs(base)
  t.equal(argAfter(args, '-accel'), 'tcg')
  t.equal(argAfter(args, '-machine'), 'q35')
  t.equal(argAfter(args, '-m'), '1024')
  t.equal(argAfter(args, '-smp'), '1')
  t.equal(argAfter(args, '-kernel'), base.xen)
  t.equal(argAfter(args, '-append'), 'console=com1 com1=115200,8n1 dom0_mem=384M,max:384M dom0_max_vcpus=1')
  t.equal(argAfter(args, '-initrd'),
    '/cache/xen-host-abc/vmlinuz console=hvc0 sc.name=xen1 sc.net=198.18.240.2/24 sc.gw=198.18.240.1,/run/xen1/initrd.img')
  t.equal(argAfter(args, '-serial'), 'file:/run/xen1/console.log')
  t.match(argAfter(args, '-netdev'), /^tap,id=n0,ifname=sct1a2bxen0,script=no,downscript=no$/)
  t.match(argAfter(args, '-name'), /process=sct1a2b-xen1$/, 'QEMU process carries the prefix')
  t.notOk(args.includes('-enable-kvm'))
})

t.test('memory, dom0 share and vCPUs are configurable and checked', async t => {
  const args = xenHostQemuArgs({ ...base, memoryMiB: 2048, dom0MemMiB: 512, cpus: 2 })
  t.equal(argAfter(args, '-m'), '2048')
  t.equal(argAfter(args, '-smp'), '2')
  t.match(xenCmdline({ ...base, memoryMiB: 2048, dom0MemMiB: 512 }), /dom0_mem=512M,max:512M/)
  t.throws(() => xenHostQemuArgs({ ...base, dom0MemMiB: 1024 }), LocalDriverError, 'dom0 cannot take all memory')
  t.throws(() => xenHostQemuArgs({ ...base, cpus: 0 }), LocalDriverError)
})

t.test('values that would break a command line are refused', async t => {
  t.throws(() => dom0Cmdline({ ...base, name: 'Xen 1' }), /name/)
  t.throws(() => dom0Cmdline({ ...base, address: '198.18.240.2' }), /address/)
  t.throws(() => dom0Cmdline({ ...base, address: '198.18.240.300/24' }), /address/)
  t.throws(() => dom0Cmdline({ ...base, gateway: 'gw' }), /gateway/)
  t.throws(() => xenHostQemuArgs({ ...base, kernel: 'relative/vmlinuz' }), /kernel/)
  t.throws(() => xenHostQemuArgs({ ...base, tap: 'much-too-long-tap-name' }), /tap/)
  t.throws(() => xenCmdline({ ...base, xenExtra: ['a b'] }), /xenExtra/)
  t.equal(dom0Cmdline({ ...base, gateway: undefined }), 'console=hvc0 sc.name=xen1 sc.net=198.18.240.2/24')
})

t.test('multiboot module list doubles literal commas (QEMU option escaping)', async t => {
  t.equal(multibootModules([{ path: '/k', cmdline: 'a=1,2' }, { path: '/i' }]), '/k a=1,,2,/i')
  t.equal(multibootModules([{ path: '/k', cmdline: '' }]), '/k')
})

t.test('MACs are stable, unicast and locally administered', async t => {
  const mac = xenHostMac('xen1')
  t.equal(mac, xenHostMac('xen1'))
  t.not(mac, xenHostMac('xen2'))
  t.match(mac, /^02:fc(:[0-9a-f]{2}){4}$/)
})

t.test('launch cpio carries the host key and authorized_keys with strict modes', async t => {
  const gz = launchCpio({ hostKey: 'PRIVATE', hostKeyPub: 'ssh-ed25519 AAAA host', authorizedKeys: 'ssh-ed25519 BBBB me' })
  const cpio = gunzipSync(gz)
  const listing = spawnSync('cpio', ['-tv', '--quiet'], { input: cpio, encoding: 'utf8' }).stdout
  t.match(listing, /^-rw------- .* etc\/ssh\/ssh_host_ed25519_key$/m)
  t.match(listing, /^drwx------ .* root\/\.ssh$/m)
  t.match(listing, /^-rw------- .* root\/\.ssh\/authorized_keys$/m)
  t.ok(cpio.includes(Buffer.from('ssh-ed25519 BBBB me\n')))
  t.throws(() => launchCpio({ hostKey: 'x', hostKeyPub: 'y', authorizedKeys: ' ' }), /authorizedKeys/)
})

t.test('ready line is found amid kernel noise; failures carry their detail', async t => {
  t.equal(readyState('(XEN) booting\n[  1.0] hvc0 up\n', 'xen1'), undefined)
  t.same(readyState('[  3.2] x\n\u001b[0mSUPERCLOUD-XEN-HOST-READY xen1\r\n', 'xen1'), { ready: true })
  t.equal(readyState('SUPERCLOUD-XEN-HOST-READY xen10\n', 'xen1'), undefined, 'another host\'s name does not count')
  t.same(readyState('SUPERCLOUD-XEN-HOST-FAILED xen1 sshd; no interface eth0\n', 'xen1'), { ready: false, detail: 'sshd; no interface eth0' })
})

