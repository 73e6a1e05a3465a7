/**
 * The pure TLS parts of a QEMU migration (drivers/qemu/migration-tls.ts, core/migration.ts): the
 * credentials' validation, the key file, and the QMP arguments that put both streams (memory
 * and the NBD disk mirror) behind them, or explicitly not.
 */
import t from 'tap'
import { isMigrationSecurity, migrationTlsProblem } from '../../../core/migration.ts'
import { credsObject, migrationTlsParams, MigrationTlsMissingError, nbdServerArgs, nbdTargetArgs, pskKeyFile, requireSecurity, TLS_CREDS_ID } from '../../../drivers/qemu/migration-tls.ts'

const tls = { identity: 'h1.0123456789ab', key: '0f'.repeat(32) }

t.test('credentials: identity and a 32-byte lowercase hex key; anything else is named', async t => {
  t.equal(migrationTlsProblem(tls), undefined)
  t.ok(isMigrationSecurity(tls))
  t.ok(isMigrationSecurity('off'), "'off' is clear text asked explicitly")
  t.notOk(isMigrationSecurity('on'))
  t.notOk(isMigrationSecurity(undefined))
  t.match(migrationTlsProblem({ ...tls, identity: 'h1:x' }), /identity/, "':' would split the key file's line")
  t.match(migrationTlsProblem({ ...tls, identity: 'a b' }), /identity/)
  t.match(migrationTlsProblem({ ...tls, identity: '' }), /identity/)
  t.match(migrationTlsProblem({ ...tls, identity: 'x'.repeat(65) }), /identity/)
  t.match(migrationTlsProblem({ ...tls, key: 'ab'.repeat(16) }), /key/, 'a 16-byte key is too short')
  t.match(migrationTlsProblem({ ...tls, key: 'AB'.repeat(32) }), /key/)
  t.match(migrationTlsProblem({ ...tls, key: 'ab'.repeat(32) + '\n' }), /key/)
  t.match(migrationTlsProblem({ ...tls, extra: 1 }), /unknown fields/)
  t.match(migrationTlsProblem(null), /not an object/)
})

t.test('requireSecurity: no credentials is SC_MIGRATION_TLS_MISSING (exit 2), naming the guest and the side', async t => {
  const err = (() => { try { requireSecurity('web1', 'incoming', undefined) } catch (e) { return e } })()
  t.ok(err instanceof MigrationTlsMissingError)
  t.equal((err as MigrationTlsMissingError).code, 'SC_MIGRATION_TLS_MISSING')
  t.equal((err as MigrationTlsMissingError).exitCode, 2)
  t.match((err as Error).message, /migration of web1 \(incoming\) refused: no TLS credentials/)
  t.throws(() => requireSecurity('web1', 'outgoing', { identity: 'h1', key: 'short' }), { code: 'SC_MIGRATION_TLS_MISSING', message: /outgoing.*malformed.*key/ })
  t.same(requireSecurity('web1', 'outgoing', tls), tls)
  t.equal(requireSecurity('web1', 'outgoing', 'off'), 'off')
})

t.test('key file and credentials objects: the server lists the one identity, the client presents it', async t => {
  t.equal(pskKeyFile(tls), `h1.0123456789ab:${'0f'.repeat(32)}\n`)
  t.same(credsObject('server', '/run/x/mig-tls', tls), { 'qom-type': 'tls-creds-psk', id: TLS_CREDS_ID, dir: '/run/x/mig-tls', endpoint: 'server' })
  t.same(credsObject('client', '/run/x/mig-tls', tls), { 'qom-type': 'tls-creds-psk', id: TLS_CREDS_ID, dir: '/run/x/mig-tls', endpoint: 'client', username: 'h1.0123456789ab' })
})

t.test('both streams use the credentials; clear text only with off, and then tls-creds is reset', async t => {
  t.same(nbdServerArgs('198.18.0.3', 49153, tls), { addr: { type: 'inet', data: { host: '198.18.0.3', port: '49153' } }, 'tls-creds': TLS_CREDS_ID })
  t.same(nbdServerArgs('198.18.0.3', 49153, 'off'), { addr: { type: 'inet', data: { host: '198.18.0.3', port: '49153' } } })
  t.same(nbdTargetArgs('mig-drv-data', '198.18.0.3', 49153, 'drv-data', tls), { driver: 'nbd', 'node-name': 'mig-drv-data', server: { type: 'inet', host: '198.18.0.3', port: '49153' }, export: 'drv-data', 'tls-creds': TLS_CREDS_ID })
  t.notOk('tls-creds' in nbdTargetArgs('m', '198.18.0.3', 1, 'e', 'off'))
  t.same(migrationTlsParams(tls), { 'tls-creds': TLS_CREDS_ID })
  t.same(migrationTlsParams('off'), { 'tls-creds': '' }, "a QEMU that ran a TLS migration before is put back to clear text")
})
