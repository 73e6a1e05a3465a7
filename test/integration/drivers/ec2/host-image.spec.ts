/** The host bootstrap run over SSH (private hosts) on a local host: works, and twice changes nothing. */
import t from 'tap'
import { readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { createLocalDriver } from '../../../../drivers/local/driver.ts'
import { SshConnection } from '../../../../core/ssh.ts'
import { hostStateDir } from '../../../../drivers/host-bootstrap/cloud-init.ts'
import { runHostBootstrap } from '../../../../drivers/host-bootstrap/run.ts'
import { sshRun } from '../cloud-driver.compliance.ts'
import { localHost, site, testContext } from '../helpers.ts'

const local = createLocalDriver()

t.test('bootstrap over SSH, twice', async t => {
  const ctx = await testContext(t, { a: site('a', '198.18.60.0/24') })
  const stateDir = hostStateDir(ctx.name, 'p1')
  t.teardown(async () => {
    await local.destroyNetwork(ctx).catch(() => {})
    await rm(`/var/lib/supercloud/${ctx.name}`, { recursive: true, force: true })
  })
  const host = await local.createHost(ctx, localHost('p1', 'a'))
  t.teardown(async () => { await local.destroyHost(ctx, host).catch(() => {}) })
  const hostRoot = join(ctx.dir, 'p1-root')
  const publicKey = (await readFile(`${ctx.keyPath}.pub`, 'utf8')).trim()
  const conn = await SshConnection.connect('p1', host.ssh)
  t.teardown(() => { conn.close() })
  const o = { supercloud: ctx.name, host: 'p1', stateDir, publicKey }
  const first = await runHostBootstrap(conn, o, { hostRoot })
  t.ok(first.hypervisor === 'kvm' || first.hypervisor === 'tcg', `reports the hypervisor mode: ${first.hypervisor} (${first.reason})`)
  t.equal(first.installed, '', 'nothing to install on this machine')
  t.ok(await stat(stateDir).then(s => s.isDirectory()), 'made the Blanket directory')
  t.match(await sshRun(host, 'ip -o link show scbr0'), /scbr0.*UP/, 'made the guest bridge, up')
  const keysFile = join(hostRoot, 'root', '.ssh', 'authorized_keys')
  const conf = join(hostRoot, 'etc', 'ssh', 'sshd_config.d', '50-supercloud.conf')
  const before = { keys: await readFile(keysFile, 'utf8'), conf: await readFile(conf, 'utf8'), keysMtime: (await stat(keysFile)).mtimeMs }
  t.equal(before.keys, `${publicKey}\n`, 'root may log in with the supercloud key')

  const second = await runHostBootstrap(conn, o, { hostRoot })
  t.same(second, first, 'the second run reports the same')
  t.equal((await stat(keysFile)).mtimeMs, before.keysMtime, 'authorized_keys untouched the second time')
  t.equal(await readFile(conf, 'utf8'), before.conf)
  t.equal((await sshRun(host, 'ip -o link show type bridge | grep -c scbr0')).trim(), '1', 'still one guest bridge')
})

t.test('a cloud image\'s restricted root line for our key is replaced', async t => {
  const ctx = await testContext(t, { a: site('a', '198.18.61.0/24') })
  t.teardown(async () => {
    await local.destroyNetwork(ctx).catch(() => {})
    await rm(`/var/lib/supercloud/${ctx.name}`, { recursive: true, force: true })
  })
  const host = await local.createHost(ctx, localHost('p2', 'a'))
  t.teardown(async () => { await local.destroyHost(ctx, host).catch(() => {}) })
  const hostRoot = join(ctx.dir, 'p2-root')
  const publicKey = (await readFile(`${ctx.keyPath}.pub`, 'utf8')).trim()
  const conn = await SshConnection.connect('p2', host.ssh)
  t.teardown(() => { conn.close() })
  // What Debian's cloud image puts in /root/.ssh/authorized_keys for the key pair.
  await conn.exec(`mkdir -p ${hostRoot}/root/.ssh && printf '%s\\n' 'ssh-rsa AAAAB3other other@x' 'no-port-forwarding,command="echo Please login as the user admin;sleep 10;exit 142" ${publicKey}' > ${hostRoot}/root/.ssh/authorized_keys`)
  await runHostBootstrap(conn, { supercloud: ctx.name, host: 'p2', stateDir: hostStateDir(ctx.name, 'p2'), publicKey }, { hostRoot })
  t.equal(await readFile(join(hostRoot, 'root', '.ssh', 'authorized_keys'), 'utf8'), `ssh-rsa AAAAB3other other@x\n${publicKey}\n`, 'other keys kept, ours unrestricted')
})
