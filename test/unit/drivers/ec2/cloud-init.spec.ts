import t from 'tap'
import { spawnSync } from 'node:child_process'
import { HOST_IMAGE_PACKAGES, USER_DATA_LIMIT, ec2UserData, hostBootstrapScript, hostStateDir, parseHostReport } from '../../../../drivers/host-bootstrap/cloud-init.ts'

const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG6g6Dp0x5fW2ZlC1r9Zl1d6z3qL7bq2y0pVhOZ9m1Xk supercloud'
const opts = { supercloud: 'demo', host: 'web1', stateDir: hostStateDir('demo', 'web1'), publicKey: key }

t.test('the bootstrap script', async t => {
  const s = hostBootstrapScript(opts)
  t.ok(s.startsWith('#!/bin/sh\n'), 'a shell script, so cloud-init runs it')
  t.equal(spawnSync('sh', ['-n'], { input: s }).status, 0, 'valid POSIX sh syntax')
  for (const [cmd, pkg] of HOST_IMAGE_PACKAGES) t.match(s, `command -v ${cmd} >/dev/null 2>&1 || need="$need ${pkg}"`, `installs ${pkg} only when ${cmd} is missing`)
  t.match(s, "SC_STATE_DIR='/var/lib/supercloud/demo/web1'")
  t.match(s, `SC_PUBKEY='${key}'`)
  t.match(s, 'PermitRootLogin prohibit-password')
  t.match(s, 'ip link add "$SC_BRIDGE" type bridge')
  t.match(s, /host-image\.json/)
  t.equal(hostBootstrapScript(opts), s, 'deterministic')
})

t.test('user-data', async t => {
  const ud = ec2UserData(opts)
  t.equal(Buffer.from(ud, 'base64').toString(), hostBootstrapScript(opts), 'base64 of the script')
  t.ok(Buffer.byteLength(hostBootstrapScript(opts)) < USER_DATA_LIMIT / 2, 'well below the 16 KiB limit')
})

t.test('values that cannot be embedded are refused', async t => {
  t.throws(() => hostBootstrapScript({ ...opts, host: "x'; rm -rf /" }))
  t.throws(() => hostBootstrapScript({ ...opts, supercloud: 'Demo' }))
  t.throws(() => hostBootstrapScript({ ...opts, publicKey: 'not a key' }))
  t.throws(() => hostBootstrapScript({ ...opts, publicKey: `${key}\nssh-ed25519 AAAA other` }))
  t.throws(() => hostBootstrapScript({ ...opts, stateDir: 'relative/dir' }))
  t.throws(() => hostBootstrapScript({ ...opts, bridge: 'br$(x)' }))
})

t.test('the report', async t => {
  t.same(parseHostReport('{"version":1,"supercloud":"demo","host":"web1","hypervisor":"tcg","reason":"no /dev/kvm","installed":"qemu-system-x86"}\n'),
    { version: 1, supercloud: 'demo', host: 'web1', hypervisor: 'tcg', reason: 'no /dev/kvm', installed: 'qemu-system-x86' })
  t.equal(parseHostReport(''), undefined)
  t.equal(parseHostReport('{"version":1,"hypervisor":"xen"}'), undefined)
})
