/**
 * Host keys pinned and verified by the controller's connections (SshSessions over the state
 * store's pins): a local host's sshd gets a new host key between two connections and the second
 * is refused with SC_HOST_KEY_MISMATCH, both fingerprints and the way out in the message, the pin
 * unchanged; `forget-host-key` (the store's forgetHostKey) lets the next connection pin the new key.
 */
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createLocalDriver, type LocalHostData } from '../../../drivers/local/driver.ts'
import { run, sshBanner, sleep } from '../../../drivers/local/sh.ts'
import { StateStore } from '../../../blanket-manager/state/store.ts'
import { SshSessions } from '../../../blanket-manager/controller/sessions.ts'
import { HostKeyMismatchError } from '../../../core/errors.ts'
import { knownHostsFingerprints } from '../../../core/host-keys.ts'
import type { HostRecord } from '../../../drivers/cloud.ts'
import { localHost, site, testContext } from '../drivers/helpers.ts'

const driver = createLocalDriver()

/** Replaces the host's sshd host key and has sshd (same pid) load it: SIGHUP re-executes sshd. */
async function regenerateHostKey (record: HostRecord): Promise<void> {
  const d = record.driverData as unknown as LocalHostData
  const key = join(d.sshdDir, 'ssh_host_ed25519_key')
  await run(['sh', '-c', `rm -f ${key} ${key}.pub && ssh-keygen -q -t ed25519 -N '' -f ${key}`])
  const pid = Number((await readFile(d.sshdPidFile, 'utf8')).trim())
  process.kill(pid, 'SIGHUP')
  await sleep(300)
  for (let i = 0; i < 50 && !await sshBanner(record.ssh.proxyCommand ?? [], 2000); i++) await sleep(100)
}

async function fingerprintOnHost (record: HostRecord): Promise<string> {
  const d = record.driverData as unknown as LocalHostData
  return knownHostsFingerprints(await readFile(join(d.sshdDir, 'ssh_host_ed25519_key.pub'), 'utf8'))[0] ?? ''
}

t.test('a host whose key changed between two controller connections is refused', async t => {
  const ctx = await testContext(t, { a: site('a', '198.18.30.0/24') })
  const store = StateStore.open(join(ctx.dir, 'state'))
  t.teardown(() => { store.close() })
  const made = await driver.createHost(ctx, localHost('h1', 'a'))
  t.teardown(async () => { await driver.destroyHost(ctx, made).catch(() => {}); await driver.destroyNetwork(ctx).catch(() => {}) })
  // Two views of the host: as the local driver records it (its known_hosts file names the key),
  // and as an ssh-driver host without ssh.hostKey (trust on first use, then the pin).
  const records: Record<string, HostRecord> = {
    local: made,
    tofu: { ...made, name: 'tofu', ssh: (({ hostKeyPath: _, ...rest }) => rest)(made.ssh) }
  }
  let sessions = new SshSessions(h => records[h], store.hostKeyPins)
  t.teardown(() => { sessions.close() })

  const before = await fingerprintOnHost(made)
  t.equal(store.hostKey('tofu'), undefined, 'nothing pinned before first contact')
  t.equal((await (await sessions.connect('tofu')).exec('echo first')).stdout.trim(), 'first')
  await sessions.connect('local')
  t.equal(store.hostKey('tofu')?.fingerprint, before, 'first contact pins the key the host presented (SHA256, as ssh-keygen prints it)')
  t.match(store.hostKey('tofu')?.publicKey, /^ssh-ed25519 AAAA/, 'with the public key, for supercloud ssh\'s known_hosts')
  t.equal(store.hostKey('local')?.fingerprint, before)

  await regenerateHostKey(made)
  const after = await fingerprintOnHost(made)
  t.not(after, before, 'the host has a new key')
  sessions.close()
  sessions = new SshSessions(h => records[h], store.hostKeyPins)

  for (const h of ['tofu', 'local']) {
    const err = await sessions.connect(h).catch((e: unknown) => e)
    t.type(err, HostKeyMismatchError, `${h}: refused`)
    const e = err as HostKeyMismatchError
    t.equal(e.code, 'SC_HOST_KEY_MISMATCH')
    t.equal(e.exitCode, 2)
    t.match(e.message, new RegExp(`host ${h} presented SSH host key ${after.replace(/[+/]/g, '\\$&')}, but ${before.replace(/[+/]/g, '\\$&')} is pinned`), 'both fingerprints')
    t.equal(store.hostKey(h)?.fingerprint, before, `${h}: the pin is unchanged`)
  }
  t.match((await sessions.connect('tofu').catch((e: unknown) => e) as Error).message, /supercloud forget-host-key tofu/, 'says what to do')
  t.match((await sessions.connect('local').catch((e: unknown) => e) as Error).message, /host key file .*known_hosts/, 'names the local driver\'s key file')

  // The operator checked the new key on the host: forgetting the pin lets the next connection pin it.
  t.ok(store.forgetHostKey('tofu'))
  t.equal((await (await sessions.connect('tofu')).exec('echo again')).stdout.trim(), 'again')
  t.equal(store.hostKey('tofu')?.fingerprint, after, 're-pinned to the new key')
})
