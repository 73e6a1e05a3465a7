/**
 * A Xen migration's stream over TLS (issue 14 item 2), on real socat and OpenSSL over loopback:
 * the receiver's argv and the sender's rune as drivers/xen/migration-plan.ts builds them, with a
 * stand-in for `xl migrate-receive` (a script recording what it got), and the credentials the
 * controller draws (core/tls-cert.ts). The right sender's bytes arrive; a sender with another key,
 * and a clear-text one, get nothing to the receiver. Also: what the credentials must look like
 * (core/migration.ts) and which end each host gets (drivers/xen/backend-migration.ts).
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { migrationTlsProblem } from '../../../core/migration.ts'
import { MIGRATION_CLIENT_CN, MIGRATION_SERVER_CN, migrationX509, selfSignedCertificate } from '../../../core/tls-cert.ts'
import { detachedArgv, receiverArgv, senderRune, streamTlsPaths, type StreamTlsFiles } from '../../../drivers/xen/migration-plan.ts'
import { streamEnd } from '../../../drivers/xen/backend-migration.ts'

const dir = mkdtempSync(join(tmpdir(), 'sc-xentls-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

const x509 = await migrationX509()
const psk = { identity: 'xen-a.0123456789ab', key: 'ab'.repeat(32) }

/** Writes one end's files the way drivers/xen/migration.ts does (key + cert; the peer's cert). */
function endFiles (root: string, end: 'server' | 'client', self: { cert: string, key: string }, peerCert: string): StreamTlsFiles {
  const f = streamTlsPaths(root, end)
  mkdirSync(f.dir, { recursive: true, mode: 0o700 })
  writeFileSync(f.self, `${self.key.trimEnd()}\n${self.cert.trimEnd()}\n`, { mode: 0o600 })
  writeFileSync(f.peer, peerCert, { mode: 0o600 })
  return { self: f.self, peer: f.peer, peerName: end === 'server' ? MIGRATION_CLIENT_CN : MIGRATION_SERVER_CN }
}

/** A stand-in for xl: `<xl> migrate-receive -p` writes its stdin to `out` and answers on stdout. */
function fakeXl (name: string, out: string): string {
  const p = join(dir, name)
  writeFileSync(p, `#!/bin/sh\necho "receiver ready"\ncat > ${out}\n`)
  chmodSync(p, 0o755)
  return p
}

let nextPort = 45000 + Math.floor(Math.random() * 2000)

/** Starts the receiver detached (as the dom0 does); resolves once it listens. */
async function receiver (name: string): Promise<{ port: number, out: string, rc: string, log: string }> {
  const port = nextPort++
  const root = join(dir, name)
  mkdirSync(root, { recursive: true })
  const out = join(root, 'received')
  const tls = endFiles(root, 'server', x509.server, x509.client.cert)
  const argv = receiverArgv({ xl: fakeXl(`xl-${name}`, out), listenIp: '127.0.0.1', port, tls })
  const f = { log: join(root, 'recv.log'), pid: join(root, 'recv.pid'), rc: join(root, 'recv.rc') }
  spawn(detachedArgv({ argv, ...f })[0] ?? '', detachedArgv({ argv, ...f }).slice(1), { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) {
    // (Not a probe connection: it would use up the one-connection listener.)
    if (readFileSync('/proc/net/tcp', 'utf8').includes(`:${port.toString(16).toUpperCase()} 00000000:0000 0A`)) break
    await sleep(50)
  }
  return { port, out, rc: f.rc, log: f.log }
}

/** Runs the sender's rune with `payload` on its stdin; its stdout (the receiver's replies) and status. */
async function send (rune: string, payload: Buffer): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    const child = spawn('sh', ['-c', rune])
    let stdout = ''; let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', code => { resolve({ code, stdout, stderr }) })
    child.stdin.end(payload)
  })
}

async function waitFile (p: string): Promise<string | undefined> {
  for (let i = 0; i < 100 && !existsSync(p); i++) await sleep(50)
  return existsSync(p) ? readFileSync(p, 'utf8') : undefined
}

t.test('the drawn credentials: self-signed, each key matching its certificate, the names the ends check', async t => {
  for (const [end, cn] of [[x509.server, MIGRATION_SERVER_CN], [x509.client, MIGRATION_CLIENT_CN]] as const) {
    const c = new X509Certificate(end.cert)
    t.equal(c.subject, `CN=${cn}`)
    t.equal(c.issuer, c.subject, 'self-signed')
    t.ok(c.checkPrivateKey(createPrivateKey(end.key)), 'the key is the certificate\'s')
    t.ok(c.verify(c.publicKey), 'signed by its own key')
  }
  t.not(x509.server.cert, x509.client.cert)
  t.equal(migrationTlsProblem({ ...psk, x509 }), undefined, 'a PSK with the pair is valid credentials')
})

t.test('over TLS the sender\'s bytes reach xl and its replies come back', async t => {
  const r = await receiver('good')
  const payload = Buffer.alloc(2 * 1024 * 1024 + 3, 9)
  const tls = endFiles(join(dir, 'good-src'), 'client', x509.client, x509.server.cert)
  const rune = senderRune({ destIp: '127.0.0.1', port: r.port, streamPidFile: join(dir, 'good-src', 'stream.pid'), tls })
  t.match(rune, /OPENSSL:127\.0\.0\.1:\d+,pf=ip4,cert=.*,cafile=.*,verify=1,commonname=supercloud-migration-server/)
  const s = await send(rune, payload)
  t.equal(s.code, 0, s.stderr)
  t.equal(s.stdout, 'receiver ready\n', 'the receiver\'s reply came back through the session')
  t.equal(await waitFile(r.rc), '0\n', 'the receiver ended well')
  t.equal(readFileSync(r.out).length, payload.length, 'every byte reached the stand-in xl')
})

t.test('a sender with another key, or in clear text, gets nothing to xl', async t => {
  const impostor = await selfSignedCertificate(MIGRATION_CLIENT_CN)
  const r = await receiver('evil')
  const tls = endFiles(join(dir, 'evil-src'), 'client', impostor, x509.server.cert)
  const s = await send(senderRune({ destIp: '127.0.0.1', port: r.port, streamPidFile: join(dir, 'evil-src', 'stream.pid'), tls }), Buffer.from('forged stream'))
  // (Under TLS 1.3 the client learns of a refused certificate only when it reads: its socat may exit 0.)
  t.equal(s.stdout, '', `the impostor reads nothing back (socat exited ${String(s.code)})`)
  t.not(await waitFile(r.rc), '0\n', 'the receiver gives up')
  t.notOk(existsSync(r.out), 'xl never ran: not a byte of the forged stream reached it')
  t.match(readFileSync(r.log, 'utf8'), /certificate|SSL/i, 'the receiver says why')

  const c = await receiver('clear')
  const plain = await send(senderRune({ destIp: '127.0.0.1', port: c.port, streamPidFile: join(dir, 'clear.pid') }), Buffer.from('clear stream'))
  t.equal(plain.stdout, '', 'a clear-text sender reads nothing back')
  await waitFile(c.rc)
  t.notOk(existsSync(c.out), 'and reaches no xl')
})

t.test('credentials: each host gets its end; none or a malformed pair is refused before anything starts', async t => {
  const sec = { ...psk, x509 }
  t.same(streamEnd('g1', 'incoming', sec), { self: x509.server, peerCert: x509.client.cert }, 'the destination is the TLS server')
  t.same(streamEnd('g1', 'outgoing', sec), { self: x509.client, peerCert: x509.server.cert }, 'the source its client')
  t.equal(streamEnd('g1', 'incoming', 'off'), undefined, 'clear text only when asked explicitly')
  t.throws(() => streamEnd('g1', 'incoming', undefined), { code: 'SC_MIGRATION_TLS_MISSING' })
  t.throws(() => streamEnd('g1', 'outgoing', psk), { code: 'SC_MIGRATION_TLS_MISSING', message: /no x509 pair/ })
  t.throws(() => streamEnd('g1', 'incoming', { ...psk, x509: { server: x509.server, client: { cert: 'not a pem', key: x509.client.key } } } as never), { code: 'SC_MIGRATION_TLS_MISSING', message: /x509\.client: cert must be one PEM certificate/ })
  t.match(migrationTlsProblem({ ...psk, x509: { server: x509.server } }), /x509\.client: not an object/)
  t.match(migrationTlsProblem({ ...psk, x509: { ...x509, extra: 1 } }), /unknown fields/)
  t.match(migrationTlsProblem({ ...psk, x509: { server: { ...x509.server, key: 'x'.repeat(9000) }, client: x509.client } }), /x509\.server: key must be/)
})

t.test('paths the socat address cannot carry are refused', async t => {
  t.throws(() => receiverArgv({ xl: 'xl', listenIp: '127.0.0.1', port: 1, tls: { self: '/a,b', peer: '/p', peerName: 'n' } }), /cannot be used inside a socat address/)
  t.throws(() => senderRune({ destIp: '127.0.0.1', port: 1, streamPidFile: '/p', tls: { self: '/a', peer: '/p:q', peerName: 'n' } }), /cannot be used inside a socat address/)
})
