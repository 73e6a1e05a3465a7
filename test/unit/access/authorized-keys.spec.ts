/** Operator keys (which public keys are accepted) and the managed block of authorized_keys (pure). */
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { authorizedKeysPath, blockLines, blockMarkers, OperatorKeyError, parsePublicKey, spliceBlock, type AuthorizedEntry } from '../../../blanket-manager/access/authorized-keys.ts'

const ALICE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHODrs/mmW7eDoc8umhIibyxccdlRYlCpbC0sOdDX/4y alice@laptop'

/** SSH wire encoding: uint32 length + bytes. */
function str (b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b, 'latin1') : b
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  return Buffer.concat([len, body])
}
const mpint = (b64url: string): Buffer => { const raw = Buffer.from(b64url, 'base64url'); return str((raw[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), raw]) : raw) }

function rsaLine (bits: number): string {
  const jwk = generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ format: 'jwk' })
  return `ssh-rsa ${Buffer.concat([str('ssh-rsa'), mpint(jwk.e ?? ''), mpint(jwk.n ?? '')]).toString('base64')} rsa`
}

function ecdsaLine (): string {
  const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })
  const point = Buffer.concat([Buffer.from([4]), Buffer.from(jwk.x ?? '', 'base64url'), Buffer.from(jwk.y ?? '', 'base64url')])
  return `ecdsa-sha2-nistp256 ${Buffer.concat([str('ecdsa-sha2-nistp256'), str('nistp256'), str(point)]).toString('base64')} ec`
}

function problem (line: string): string {
  try { parsePublicKey(line, 'operators.0.key'); return 'accepted' } catch (err) {
    if (!(err instanceof OperatorKeyError)) throw err
    t.equal(err.code, 'SC_OPERATOR_KEY')
    t.match(err.message, /^operators\.0\.key: /, 'names where the key came from')
    return err.problem
  }
}

t.test('accepted: ed25519, ecdsa, rsa of 2048 bits or more; the fingerprint is what ssh-keygen -lf prints', async t => {
  const k = parsePublicKey(ALICE + '\n', 'x')
  t.equal(k.type, 'ssh-ed25519')
  t.equal(k.fingerprint, 'SHA256:SpKjHnCHuW8zl7wAb6Mr7s21sy8aWGi0cBOpcJxPP44')
  t.equal(problem(ecdsaLine()), 'accepted')
  t.equal(problem(rsaLine(2048)), 'accepted')
})

t.test('refused, saying why: short rsa, options prefix, more than one line, private keys, other types, bad data', async t => {
  t.match(problem(rsaLine(1024)), /ssh-rsa key of 1024 bits is too short \(at least 2048\)/)
  t.match(problem(`command="/bin/sh" ${ALICE}`), /options prefix .* is not accepted/)
  t.match(problem(`from="10.0.0.1",no-pty ${ALICE}`), /options prefix/)
  t.match(problem(`restrict ${ALICE}`), /options prefix/)
  t.match(problem(`${ALICE}\n${ALICE}`), /one line/)
  t.match(problem(`${ALICE}\rssh-ed25519 AAAA`), /one line/)
  t.match(problem('-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n'), /private key/)
  t.match(problem('ssh-dss AAAAB3NzaC1kc3MAAACBAP'), /key type 'ssh-dss' is not accepted/)
  t.match(problem(''), /no public key/)
  t.match(problem('ssh-ed25519'), /no base64 key data/)
  t.match(problem(ALICE.replace('ssh-ed25519', 'ssh-rsa')), /not an ssh-rsa key/, 'the type inside the data must be the one named')
  t.match(problem('ssh-ed25519 ' + Buffer.concat([str('ssh-ed25519'), str(Buffer.alloc(16))]).toString('base64')), /malformed/)
})

const alice: AuthorizedEntry = { name: 'alice', key: parsePublicKey(ALICE, 'x') }
const ctl: AuthorizedEntry = { name: 'controller', key: parsePublicKey(ALICE.replace('IHODrs', 'IHODrt'), 'x') }
const m = blockMarkers('prod')

t.test('the block: markers naming the supercloud, each key once, tagged with who brings it', async t => {
  t.strictSame(blockLines('prod', [ctl, alice, { ...alice, name: 'alice-again' }]), [
    m.begin,
    `${ctl.key.type} ${ctl.key.blob} supercloud:controller`,
    `${alice.key.type} ${alice.key.blob} supercloud:alice`,
    m.end
  ])
  t.strictSame(blockLines('prod', []), [], 'no keys: no block')
})

t.test('splice: replaces only the block, keeps other lines and its place; idempotent; empty removes it', async t => {
  const mine = 'ssh-ed25519 AAAAmine me@desk'
  const block = blockLines('prod', [ctl, alice])
  const first = spliceBlock(`${mine}\n`, 'prod', block)
  t.equal(first, [mine, ...block].join('\n') + '\n', 'appended after the lines already there')
  t.equal(spliceBlock(first, 'prod', block), first, 'the same block again changes nothing')
  const after = `${first}# added later by hand\n`
  const revoked = spliceBlock(after, 'prod', blockLines('prod', [ctl]))
  t.notMatch(revoked, /supercloud:alice/, 'the revoked key is gone')
  t.equal(revoked, [mine, m.begin, `${ctl.key.type} ${ctl.key.blob} supercloud:controller`, m.end, '# added later by hand'].join('\n') + '\n', 'in place, the other lines as they were')
  t.equal(spliceBlock(revoked, 'prod', []), `${mine}\n# added later by hand\n`, 'an empty block removes it')
  t.equal(spliceBlock('', 'prod', []), '')
  const other = spliceBlock(first, 'staging', blockLines('staging', [alice]))
  t.equal(spliceBlock(other, 'prod', []), [mine, ...blockLines('staging', [alice])].join('\n') + '\n', "another supercloud's block is not ours")
  const cut = `${mine}\n${m.begin}\n${alice.key.type} ${alice.key.blob} supercloud:alice\nssh-ed25519 AAAAhand added@later\n`
  t.equal(spliceBlock(cut, 'prod', []), `${mine}\nssh-ed25519 AAAAhand added@later\n`, 'a block without its END ends at the first line not of it')
})

t.test("the file sshd reads: AuthorizedKeysFile's first entry, tokens expanded, relative to the home", async t => {
  t.equal(authorizedKeysPath(undefined, '/root', 'root'), '/root/.ssh/authorized_keys')
  t.equal(authorizedKeysPath(' .ssh/authorized_keys .ssh/authorized_keys2', '/home/bob/', 'bob'), '/home/bob/.ssh/authorized_keys')
  t.equal(authorizedKeysPath('/etc/ssh/keys/%u', '/home/bob', 'bob'), '/etc/ssh/keys/bob')
  t.equal(authorizedKeysPath('%h/.ssh/k%%1', '/home/bob', 'bob'), '/home/bob/.ssh/k%1')
  t.equal(authorizedKeysPath('/var/lib/sc/h1/sshd/authorized_keys', '/root', 'root'), '/var/lib/sc/h1/sshd/authorized_keys')
})
