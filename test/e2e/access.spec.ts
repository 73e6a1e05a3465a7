/**
 * Issue 16, credentials: two operators (two state directories, two supercloud keys) share one
 * supercloud's state in a real PostgreSQL. Alice grants Bob's key, her `up` authorizes it on the
 * host (a real sshd: Bob logs in with his private key, and `supercloud ssh` from his own state
 * directory works with his own key against the host key pinned in the shared state); a spec
 * operator comes and goes the same way; after `access revoke` and the next `up`, Bob's login is
 * refused. One local host, no guests.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { run } from '../../drivers/local/sh.ts'
import { sandbox } from '../helpers/cli.ts'
import { oneHostSpec } from '../helpers/specs.ts'
import { startPostgres } from '../helpers/postgres.ts'
import { openStateStore } from '../../blanket-manager/state/store.ts'
import { knownHostsFingerprints } from '../../core/host-keys.ts'
import { knownHostsLine, sshArgs } from '../../blanket-manager/cli/ssh-args.ts'
import type { HostRecord } from '../../drivers/cloud.ts'

const NAME = 'access'
const pg = startPostgres()
const url = pg.url()
const base = oneHostSpec({ name: NAME, subnet: '198.18.16.0/24', memory: '384M', vms: [] })
const alice = sandbox(t, base, NAME, { SUPERCLOUD_STATE: url })
const bob = sandbox(t, base, NAME, { SUPERCLOUD_STATE: url })

/** Bob's view of the shared state (his own local directory). */
function bobsState<T> (fn: (s: ReturnType<typeof openStateStore>) => T): T {
  const s = openStateStore(NAME, join(bob.stateRoot, NAME), url)
  try { return fn(s) } finally { s.close() }
}

/** A real OpenSSH login to h1 with `key`, checking the host key pinned in the state; its exit status. */
function login (record: HostRecord, key: string, pinned: string): { code: number | null, stderr: string } {
  const known = join(bob.dir, 'known_hosts')
  writeFileSync(known, knownHostsLine('h1', pinned))
  const r = spawnSync('ssh', sshArgs('h1', { ...record.ssh, privateKeyPath: key }, known, ['true'], false), { encoding: 'utf8', timeout: 30000 })
  return { code: r.status, stderr: r.stderr }
}

/** This machine's own root authorized_keys: a local host shares its file system, and must not have it changed. */
const machineKeys = (): string | undefined => { try { return readFileSync('/root/.ssh/authorized_keys', 'utf8') } catch { return undefined } }

t.test('a granted operator logs in after the next up; revoked, refused after the next', async t => {
  const machineBefore = machineKeys()
  const up = await alice.run(['up'])
  t.equal(up.code, 0, `alice's first up ${up.stderr.slice(-600)}`)

  // Bob's supercloud key, in his own state directory (ensureKey keeps a pair that is there).
  const bobDir = join(bob.stateRoot, NAME)
  mkdirSync(bobDir, { recursive: true, mode: 0o700 })
  const bobKey = join(bobDir, 'id_ed25519')
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'bob', '-f', bobKey])
  const carolKey = join(alice.dir, 'carol')
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'carol', '-f', carolKey])

  const grant = await alice.run(['access', 'grant', 'bob', `${bobKey}.pub`])
  t.equal(grant.code, 0, grant.stderr)
  t.match(grant.stderr, /operator bob \(ssh-ed25519 SHA256:\S+\) may log in to the hosts from the next `supercloud up`/)
  const listed = await bob.run(['access', 'list'])
  t.match(listed.stdout, /^bob\s+ssh-ed25519 SHA256:\S+\s+granted by \S+@\S+/m, "bob sees alice's grant in the shared state")

  // Alice's next up: the grant, and carol from the spec, reach the host.
  writeFileSync(alice.spec, base + `operators:\n  - { name: carol, keyFile: ${carolKey}.pub }\n`)
  const up2 = await alice.run(['up'])
  t.equal(up2.code, 0, up2.stderr.slice(-600))
  t.match(up2.stderr, /authorized_keys: 3 key\(s\) \(controller, carol, bob\)/)

  const record = bobsState(s => s.host('h1')?.record)
  if (record === undefined) throw new Error('no record of h1')
  const sshd = join(alice.stateRoot, NAME, 'hosts', 'h1', 'sshd')
  const hostFp = knownHostsFingerprints(readFileSync(join(sshd, 'ssh_host_ed25519_key.pub'), 'utf8'))[0]
  const pin = bobsState(s => s.hostKey('h1'))
  t.equal(pin?.fingerprint, hostFp, "bob's state holds the host key alice's controller pinned")
  const authorized = readFileSync(join(sshd, 'authorized_keys'), 'utf8').split('\n')
  t.equal(authorized[0], readFileSync(join(alice.stateRoot, NAME, 'id_ed25519.pub'), 'utf8').trim(), 'the line the driver put there is kept, outside the block')
  t.match(authorized[1], /^# BEGIN supercloud access: managed by supercloud/)
  t.equal(machineKeys(), machineBefore, "the block went to the host sshd's file, not to this machine's /root/.ssh")
  // No private key anywhere in the shared database: every table of the supercloud's schema, as text.
  const tables = pg.psql(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'supercloud_${NAME}'`).split('\n')
  t.ok(tables.includes('operators') && tables.includes('host_keys'), tables.join(' '))
  const privateRows = tables.map(tb => Number(pg.psql(`SELECT count(*) FROM supercloud_${NAME}.${tb} r WHERE r::text LIKE '%PRIVATE KEY%'`)))
  t.strictSame(privateRows, tables.map(() => 0), 'no row of any table holds a private key')

  t.equal(login(record, bobKey, pin?.publicKey ?? '').code, 0, 'bob logs in with his private key')
  t.equal(login(record, carolKey, pin?.publicKey ?? '').code, 0, 'carol (spec operator) logs in')
  const viaCli = await bob.run(['ssh', 'h1', '--', 'echo', 'from-bob'])
  t.equal(viaCli.code, 0, `\`supercloud ssh\` from bob's state directory, with his own key ${viaCli.stderr}`)
  t.match(viaCli.stdout, /from-bob/)

  // Bob's grant revoked, carol out of the spec: both refused after the next up.
  const revoke = await bob.run(['access', 'revoke', 'bob'])
  t.equal(revoke.code, 0, revoke.stderr)
  writeFileSync(alice.spec, base)
  const up3 = await alice.run(['up'])
  t.equal(up3.code, 0, up3.stderr.slice(-600))
  t.match(up3.stderr, /authorized_keys: 1 key\(s\) \(controller\)/, "alice's controller, running up, keeps its own key")
  const gone = login(record, bobKey, pin?.publicKey ?? '')
  t.equal(gone.code, 255, 'bob is refused')
  t.match(gone.stderr, /Permission denied/)
  t.equal(login(record, carolKey, pin?.publicKey ?? '').code, 255, 'carol is refused')
  // Bob's controller used his own key all along (alice's, in her directory, is still authorized).
  const bobCli = await bob.run(['ssh', 'h1', '--', 'true'])
  t.not(bobCli.code, 0, "bob's `supercloud ssh` is refused too")
  t.match(bobCli.stderr, /SC_HOST_AUTH/)
})
