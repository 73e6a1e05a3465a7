/** What goes into the managed block at `up`, and which private key each operator logs in with. */
import t from 'tap'
import { accessEntries } from '../../../blanket-manager/controller/access.ts'
import { withOwnKey } from '../../../blanket-manager/access/own-key.ts'
import { accessListing } from '../../../blanket-manager/cli/access.ts'
import { SupercloudError } from '../../../core/errors.ts'
import type { Spec } from '../../../core/spec.ts'

const KEY = (c: string): string => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHODrs/mmW7eDoc8umhIibyxccdlRYlCpbC0sOdDX/4${c} x@y`
const spec = (operators: Spec['operators']): Spec => ({ file: '/s/supercloud.yaml', name: 'prod', sites: {}, wan: { delayMs: 0 }, hosts: {}, images: {}, vms: {}, network: { switches: {}, wires: [], extenders: {} } as never, operators })

t.test('the controller key first, then the spec operators, then the granted ones', async t => {
  const e = await accessEntries(spec([{ name: 'alice', key: KEY('a'), field: 'operators[0].key' }]), KEY('c'), [{ name: 'bob', publicKey: KEY('b') }])
  t.strictSame(e.map(x => [x.name, x.key.blob.slice(-2)]), [['controller', '4c'], ['alice', '4a'], ['bob', '4b']])
})

t.test('a key file missing at up, or a bad granted key, is SC_OPERATOR_KEY naming the spec file and field', async t => {
  const err = await accessEntries(spec([{ name: 'carol', keyFile: '/nonexistent/carol.pub', field: 'operators[0].keyFile' }]), KEY('c'), []).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof SupercloudError)
  t.equal((err as SupercloudError).code, 'SC_OPERATOR_KEY')
  t.match((err as Error).message, /^\/s\/supercloud\.yaml: operators\[0\]\.keyFile \(\/nonexistent\/carol\.pub\): cannot read the public key file/)
  await t.rejects(accessEntries(spec(undefined), KEY('c'), [{ name: 'bob', publicKey: 'ssh-rsa AAAA' }]), { code: 'SC_OPERATOR_KEY' })
})

t.test("another operator's supercloud key in a record is replaced by this operator's; a spec's key path is kept", async t => {
  const ep = { host: '198.18.1.2', port: 22, username: 'root', privateKeyPath: '/home/alice/.local/state/supercloud/prod/id_ed25519' }
  t.equal(withOwnKey(ep, '/home/bob/.local/state/supercloud/prod/id_ed25519').privateKeyPath, '/home/bob/.local/state/supercloud/prod/id_ed25519')
  t.equal(withOwnKey({ ...ep, privateKeyPath: '/home/alice/.ssh/id_ed25519' }, '/home/bob/.local/state/supercloud/prod/id_ed25519').privateKeyPath, '/home/alice/.ssh/id_ed25519')
  t.equal(withOwnKey(ep, undefined), ep)
})

t.test('access list: spec and granted operators with their fingerprints and where they come from', async t => {
  const lines = accessListing(spec([{ name: 'alice', key: KEY('a'), field: 'operators[0].key' }]), [{ name: 'bob', publicKey: KEY('b'), added: '2026-12-07T18:00:00.000Z', by: 'root@m' }])
  t.match(lines[1], /^alice\s+ssh-ed25519 SHA256:\S+\s+spec operators\[0\]\.key$/)
  t.match(lines[2], /^bob\s+ssh-ed25519 SHA256:\S+\s+granted by root@m 2026-12-07T18:00:00.000Z$/)
  t.match(accessListing(undefined, [])[0], /^no operators/)
})
