/** `operators:` in supercloud.yaml: names and public keys checked, key files read by loadSpec, errors at file:line:column. */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadSpec, parseSpec } from '../../../blanket-manager/specfile/load.ts'
import { SpecError, type SpecIssue } from '../../../core/errors.ts'
import { specIssues } from './issues.ts'

const ALICE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHODrs/mmW7eDoc8umhIibyxccdlRYlCpbC0sOdDX/4y alice@laptop'
const spec = (ops: string): string => `sites:\n  lab: { subnet: 198.18.30.0/24 }\noperators:\n${ops}`
const brief = (issues: SpecIssue[]): Array<[number, string, string]> => issues.map(i => [i.line, i.field, i.message])

t.test('inline keys and key files (relative to the spec) are read and kept', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-ops-'))
  writeFileSync(join(dir, 'bob.pub'), ALICE.replace('alice', 'bob') + '\n')
  const file = join(dir, 'supercloud.yaml')
  writeFileSync(file, spec(`  - { name: alice, key: "${ALICE}" }\n  - { name: bob, keyFile: bob.pub }\n`))
  const s = await loadSpec(file)
  t.strictSame(s.operators, [
    { name: 'alice', field: 'operators[0].key', key: ALICE },
    { name: 'bob', field: 'operators[1].keyFile', keyFile: join(dir, 'bob.pub'), key: ALICE.replace('alice', 'bob') }
  ])
  t.equal(parseSpec(spec(''), '/s/supercloud.yaml').operators, undefined, 'none: absent')
  t.strictSame(parseSpec(spec('  - { name: bob, keyFile: /keys/bob.pub }\n'), '/s/supercloud.yaml').operators,
    [{ name: 'bob', field: 'operators[0].keyFile', keyFile: '/keys/bob.pub' }], 'parseSpec alone leaves the file to up')

  writeFileSync(file, spec('  - { name: carol, keyFile: carol.pub }\n'))
  const err = await loadSpec(file).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof SpecError)
  t.match(brief((err as SpecError).issues), [[4, 'operators[0].keyFile', /cannot read public key file .*carol\.pub/]], 'a missing key file is a spec error at its line')
})

t.test('bad names, keys with options or of refused types, both or neither key: each at its line and field', async t => {
  const got = brief(specIssues(spec([
    `  - { name: alice, key: "${ALICE}" }`,
    `  - { name: alice, key: "${ALICE}" }`,
    `  - { name: "bad name", key: "${ALICE}" }`,
    `  - { name: eve, key: 'command="/bin/sh" ${ALICE}' }`,
    '  - { name: dave, key: "ssh-dss AAAAB3NzaC1kc3MAAACBAP" }',
    '  - { name: frank }',
    `  - { name: gina, key: "${ALICE}", keyFile: g.pub }`,
    '  - { name: controller, keyFile: c.pub }',
    '  - { name: hal, key: "x", extra: 1 }'
  ].join('\n') + '\n'), '/s/supercloud.yaml'))
  t.match(got, [
    [5, 'operators[1].name', /listed twice/],
    [6, 'operators[2].name', /not an operator name/],
    [7, 'operators[3].key', /options prefix .* is not accepted/],
    [8, 'operators[4].key', /key type 'ssh-dss' is not accepted/],
    [9, 'operators[5]', /exactly one of key .* or keyFile/],
    [10, 'operators[6]', /exactly one of key/],
    [11, 'operators[7].name', /not an operator name.*not 'controller'/],
    [12, 'operators[8].key', /key type 'x' is not accepted/],
    [12, 'operators[8].extra', /unknown key 'extra'/]
  ])
})
