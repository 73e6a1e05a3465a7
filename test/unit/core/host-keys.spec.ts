/** Host key fingerprints as OpenSSH prints them, spec values, known_hosts and cloud-init's console block. */
import t from 'tap'
import {
  consoleFingerprintBlock, consoleFingerprints, fingerprintOf, hostKeyFingerprint, isFingerprint, knownHostsFingerprints, publicKeyBlob, publicKeyLine
} from '../../../core/host-keys.ts'
import { expectedHostKeys, type HostKeyPins, type PinnedHostKey } from '../../../core/ssh.ts'

// A key made with ssh-keygen; `ssh-keygen -lf` printed the fingerprint.
const PUB = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICQHwetClfkXJ85GDhBWan0pnIytYP04QCGxfDN5Oxwb root@vm'
const FP = 'SHA256:CNgnrdL2Iext00Iw1hIJrkRL0/U/aXs2heu9ksMmv1k'
const OTHER = 'SHA256:' + 'A'.repeat(43)

t.test('fingerprintOf: SHA256 of the key blob, base64 without padding, as ssh-keygen -lf prints it', async t => {
  const blob = publicKeyBlob(PUB)
  t.ok(blob)
  t.equal(fingerprintOf(blob as Buffer), FP)
  t.equal(publicKeyLine(blob as Buffer), PUB.split(' ').slice(0, 2).join(' '), 'the blob names its own type')
})

t.test('isFingerprint / hostKeyFingerprint: a fingerprint or a public key line, nothing else', async t => {
  t.ok(isFingerprint(FP))
  t.notOk(isFingerprint('SHA256:short'))
  t.notOk(isFingerprint('MD5:aa:bb'))
  t.equal(hostKeyFingerprint(FP), FP)
  t.equal(hostKeyFingerprint(`  ${PUB}\n`), FP)
  t.equal(hostKeyFingerprint(PUB.split(' ').slice(0, 2).join(' ')), FP, 'comment optional')
  t.equal(hostKeyFingerprint('ssh-rsa ' + PUB.split(' ')[1]), undefined, 'type disagreeing with the blob')
  t.equal(hostKeyFingerprint('ssh-ed25519 not*base64'), undefined)
  t.equal(hostKeyFingerprint('-oProxyCommand=x'), undefined)
  t.equal(hostKeyFingerprint(''), undefined)
})

t.test('knownHostsFingerprints: keys of a known_hosts file, host patterns skipped', async t => {
  t.strictSame(knownHostsFingerprints(`198.18.1.10 ${PUB}\n# comment\n\nbad line\n`), [FP])
  t.strictSame(knownHostsFingerprints(PUB), [FP])
})

t.test('consoleFingerprints: the block cloud-init prints (ec2: prefix or not), the last complete one', async t => {
  const aws = [
    'Cloud-init v. 22.2 running',
    'ec2: ',
    'ec2: #############################################################',
    'ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----',
    `ec2: 256 ${OTHER} root@ip-10-0-0-1 (ECDSA)`,
    `ec2: 256 ${FP} root@ip-10-0-0-1 (ED25519)`,
    'ec2: 3072 MD5:aa:bb:cc root@ip-10-0-0-1 (RSA)',
    'ec2: -----END SSH HOST KEY FINGERPRINTS-----',
    'ec2: #############################################################',
    '-----BEGIN SSH HOST KEY KEYS-----',
    PUB,
    '-----END SSH HOST KEY KEYS-----'
  ].join('\r\n')
  t.strictSame(consoleFingerprints(aws), [OTHER, FP])
  t.strictSame(consoleFingerprints(''), [], 'not booted yet')
  t.strictSame(consoleFingerprints('-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 ' + FP + ' x (ED25519)\n'), [], 'block not complete yet')
  const rebooted = `${aws}\n-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 ${OTHER} y (ED25519)\n-----END SSH HOST KEY FINGERPRINTS-----\n`
  t.strictSame(consoleFingerprints(rebooted), [OTHER], 'the newest block')
  t.strictSame(consoleFingerprints(consoleFingerprintBlock([`256 ${FP} root@h (ED25519)`])), [FP], 'what the fake EC2 server prints reads back')
})

t.test('expectedHostKeys: the endpoint\'s own keys, else the pin, else first contact', async t => {
  let pin: PinnedHostKey | undefined
  const pins: HostKeyPins = { pinned: () => pin, pin: () => {} }
  const ep = { host: '198.18.1.10', port: 22, username: 'root', privateKeyPath: '/k' }
  t.equal(expectedHostKeys('h1', ep, undefined, pins), undefined, 'first contact: accept and pin')
  pin = { fingerprint: FP, publicKey: PUB, since: '2026-01-01T00:00:00Z' }
  const byPin = expectedHostKeys('h1', ep, undefined, pins)
  t.strictSame(byPin?.fingerprints, [FP])
  t.match(byPin?.remedy, /supercloud forget-host-key h1/)
  const own = expectedHostKeys('h1', { ...ep, hostKeys: { fingerprints: [OTHER], source: 'the console output of instance i-1' } }, undefined, pins)
  t.strictSame(own?.fingerprints, [OTHER], 'the cloud\'s word wins over an older pin (a re-created instance)')
  t.match(own?.source, /console output of instance i-1/)
  t.strictSame(expectedHostKeys('h1', ep, `198.18.1.10 ${PUB}\n`, undefined)?.fingerprints, [FP], 'the local driver\'s known_hosts file')
})
