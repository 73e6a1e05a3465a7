/**
 * A host whose SSH host key changed between two `up`s (issue 14): the second `up` stops with
 * SC_HOST_KEY_MISMATCH (both fingerprints, what to do), changing nothing; `supercloud ssh` to it
 * is refused too. The host is a local one: its sshd gets a new key file and re-reads it (SIGHUP).
 */
import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { run, sleep } from '../../drivers/local/sh.ts'
import { sandbox } from '../helpers/cli.ts'
import { oneHostSpec, tinyVmLine } from '../helpers/specs.ts'
import { StateStore } from '../../blanket-manager/state/store.ts'
import { knownHostsFingerprints } from '../../core/host-keys.ts'

const NAME = 'hostkey'
const spec = (vms: string[]): string => oneHostSpec({ name: NAME, subnet: '198.18.14.0/24', memory: '512M', vms })
const web1 = tinyVmLine('web1', { host: 'h1', memory: '128M' })
const sb = sandbox(t, spec([web1]), NAME)

t.test('the second up meets another host key and stops, changing nothing', async t => {
  const up = await sb.run(['up'])
  t.equal(up.code, 0, `first up exits 0 ${up.stderr.slice(-400)}`)
  const stateDir = join(sb.stateRoot, NAME)
  const pinned = (): string | undefined => { const s = StateStore.open(stateDir); try { return s.hostKey('h1')?.fingerprint } finally { s.close() } }
  const sshdDir = join(stateDir, 'hosts', 'h1', 'sshd')
  const before = knownHostsFingerprints(readFileSync(join(sshdDir, 'ssh_host_ed25519_key.pub'), 'utf8'))[0]
  t.equal(pinned(), before, 'the key met at first contact is pinned in the state')

  // Someone else's sshd now answers at the host's address: another key, same address.
  const key = join(sshdDir, 'ssh_host_ed25519_key')
  await run(['sh', '-c', `rm -f ${key} ${key}.pub && ssh-keygen -q -t ed25519 -N '' -f ${key}`])
  process.kill(Number(readFileSync(join(sshdDir, 'sshd.pid'), 'utf8').trim()), 'SIGHUP')
  await sleep(1000)
  const after = knownHostsFingerprints(readFileSync(`${key}.pub`, 'utf8'))[0] ?? ''
  t.not(after, before)

  // The spec now asks for a second VM: the refused up must not create it.
  writeFileSync(sb.spec, spec([web1, tinyVmLine('web2', { host: 'h1', memory: '128M' })]))
  const again = await sb.run(['up'])
  t.equal(again.code, 2, 'second up exits 2')
  t.match(again.stderr, /SC_HOST_KEY_MISMATCH/)
  t.match(again.stderr, after, 'names the key it met')
  t.match(again.stderr, before ?? 'x', 'and the pinned one')
  t.match(again.stderr, /check the new fingerprint on the host itself/, 'says what to do')
  const s = StateStore.open(stateDir)
  t.equal(s.vm('web2'), undefined, 'web2 was not created')
  t.equal(s.vm('web1')?.status, 'ready', 'web1 is as it was')
  t.equal(s.host('h1')?.status, 'ready', 'the host was not re-created')
  s.close()
  t.equal(pinned(), before, 'the pin is unchanged')

  const ssh = await sb.run(['ssh', 'h1', 'true'])
  t.not(ssh.code, 0, 'supercloud ssh refuses it too')
  t.match(ssh.stderr, /SC_HOST_KEY_MISMATCH/)
})
