/** The page repository's TLS-PSK credentials (overdriver/repository/transport.ts): drawn, checked, read from a key file. */
import t from 'tap'
import { checkRepositoryTls, newRepositoryTls, parsePskFile } from '../../../overdriver/repository/transport.ts'

t.test('a drawn credential is well formed and new each time', async t => {
  const a = newRepositoryTls()
  const b = newRepositoryTls()
  t.match(a, { identity: /^repository-[0-9a-f]{12}$/, key: /^[0-9a-f]{64}$/ })
  t.not(a.key, b.key)
  t.not(a.identity, b.identity)
  t.same(checkRepositoryTls(a), a)
})

t.test('a key file is identity:hexkey, one line; anything else is refused with the reason', async t => {
  const key = 'ab'.repeat(32)
  t.same(parsePskFile(`repository-1:${key}\n`), { identity: 'repository-1', key })
  for (const [text, why] of [
    ['', /not an object/],
    [`repository-1 ${key}`, /not an object/],
    [`repository-1:${'ab'.repeat(16)}`, /key must be 64 lowercase hex digits/],
    [`repository-1:${key.toUpperCase()}`, /not an object/],
    [`-r:${key}`, /identity must be/],
    [`r:${key}\nr2:${key}\n`, /not an object/]
  ] as const) t.throws(() => parsePskFile(text), why, JSON.stringify(text))
  t.throws(() => checkRepositoryTls({ identity: 'r', key, extra: 1 }), /unknown fields/)
  t.throws(() => checkRepositoryTls({ identity: 'r', key, x509: {} }), /x509 is not used by a repository/, 'a migration\'s x509 pair means nothing here')
})
