/**
 * A real Xen host on this machine: Debian's Xen 4.17 under QEMU (TCG) with the PV dom0
 * of images/xen-host, in its own network namespace, reached over SSH like any host.
 * Needs xen-hypervisor-4.17-amd64 and xen-utils-4.17 (scripts/setup.sh).
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SshConnection } from '../../../blanket-manager/ssh/client.ts'
import { startXenHost, type XenHost } from '../../../drivers/local/xen-host.ts'
import { registerPrefix, sweepPrefix } from '../../helpers/sweep-lib.ts'

const prefix = `sct${randomBytes(2).toString('hex')}`
const ns = `${prefix}-xen`
registerPrefix(prefix)

t.test('Xen host boots to a dom0 that answers over SSH and lists Domain-0', async t => {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-xen-`))
  let host: XenHost | undefined
  let conn: SshConnection | undefined
  t.teardown(async () => {
    conn?.close()
    await host?.stop()
    sweepPrefix(prefix)
    rmSync(dir, { recursive: true, force: true })
  })
  execFileSync('ip', ['netns', 'add', ns])
  const key = join(dir, 'id_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'xen-test', '-f', key])

  host = await startXenHost({
    prefix,
    name: 'xen1',
    ns,
    dir: join(dir, 'xen1'),
    address: '198.18.240.2/24',
    tapAddress: '198.18.240.1',
    privateKeyPath: key,
    onProgress: ev => t.comment(`[${ev.phase}] ${ev.message}`)
  })
  t.comment(`dom0 ready after ${host.timings.readyMs} ms, sshd after ${host.timings.sshMs} ms`)

  conn = await SshConnection.connect('xen1', host.ssh, { timeoutMs: 60_000 })
  const info = await conn.exec('xl info', { timeoutMs: 60_000 })
  t.match(info.stdout, /^xen_major\s*:\s*4$/m, 'xl info talks to a running Xen 4.x')
  t.match(info.stdout, /^xen_minor\s*:\s*17$/m, 'Xen 4.17')
  t.match(info.stdout, /^host\s*:\s*xen1$/m, 'on our dom0')
  const total = Number(/^total_memory\s*:\s*(\d+)$/m.exec(info.stdout)?.[1])
  t.ok(total >= 900 && total <= 1024, `Xen sees the machine's ~1024 MiB (${total})`)

  const list = await conn.exec('xl list', { timeoutMs: 60_000 })
  const dom0 = list.stdout.split('\n').find(l => l.startsWith('Domain-0 '))
  t.ok(dom0 !== undefined, 'xl list shows Domain-0')
  t.match(dom0 ?? '', /^Domain-0\s+0\s+\d+\s+1\s/, 'Domain-0 has id 0 and one vCPU')
})
