/**
 * An `ssh` host with `hypervisor: xen` goes through the Xen boot (docs/xen-real-hosts.md)
 * before the Blanket bootstrap: on a server that cannot run Xen as its hypervisor (this
 * machine: a container) `supercloud up` stops with SC_XEN_UNSUPPORTED and the reason, and
 * leaves the server as it was (no agent, no boot entries touched).
 */
import t from 'tap'
import { createLocalDriver } from '../../../drivers/local/driver.ts'
import type { HostRecord } from '../../../drivers/cloud.ts'
import { sshStateDir } from '../../../drivers/ssh/driver.ts'
import { SshConnection } from '../../../core/ssh.ts'
import { localHost, publishOnLoopback, site, testContext } from '../../integration/drivers/helpers.ts'
import { sandbox } from '../../helpers/cli.ts'

// The "existing server": a namespaced host of the local driver, published on a loopback port.
const local = createLocalDriver()
const ctx = await testContext(t, { a: site('a', '198.18.41.0/24') })
let made: HostRecord | undefined
t.teardown(async () => {
  if (made !== undefined) await local.destroyHost(ctx, made).catch(() => {})
  await local.destroyNetwork(ctx).catch(() => {})
})
await local.ensureNetwork(ctx)
const server = made = await local.createHost(ctx, localHost('server', 'a'))
const port = await publishOnLoopback(t, ctx, 'a', server.address)

const sb = sandbox(t, `
name: sshxen
sites:
  dc: {}
hosts:
  srv1:
    site: dc
    driver: ssh
    hypervisor: { backend: xen }
    ssh: { address: 127.0.0.1, port: ${port}, user: root, key: ${ctx.keyPath} }
`, 'sshxen')

t.test('up refuses a server that cannot run Xen, with the reason, and changes nothing there', async t => {
  const r = await sb.run(['up'])
  t.equal(r.code, 2, `up exits 2\n${r.stdout.slice(-1500)}${r.stderr}`)
  t.match(r.stderr, /error\[SC_XEN_UNSUPPORTED\]/, 'the stable code')
  t.match(r.stderr, /srv1/, 'names the host')
  t.match(r.stderr, /container/, `says why: ${r.stderr.trim().split('\n').slice(-1).join('')}`)
  const c = await SshConnection.connect('server', server.ssh)
  try {
    const after = await c.exec(`ls ${sshStateDir('sshxen')} 2>/dev/null; ls /etc/default/grub.d/supercloud-xen.cfg 2>/dev/null; true`, { allowFailure: true })
    t.notMatch(after.stdout, /agent|supercloud-xen\.cfg/, `no agent installed, no GRUB setting written: ${after.stdout.trim()}`)
  } finally {
    c.close()
  }
})
