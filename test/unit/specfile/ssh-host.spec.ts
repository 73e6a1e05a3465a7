/** `driver: ssh` hosts in supercloud.yaml: ssh.user, ssh.address and ssh.hostKey checked, errors at file:line:column. */
import t from 'tap'
import { parseSpec } from '../../../blanket-manager/specfile/load.ts'
import type { SpecIssue } from '../../../core/errors.ts'
import { specIssues } from './issues.ts'

const PUB = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICQHwetClfkXJ85GDhBWan0pnIytYP04QCGxfDN5Oxwb root@vm'
const FP = 'SHA256:CNgnrdL2Iext00Iw1hIJrkRL0/U/aXs2heu9ksMmv1k'

/** A spec whose host s1 has `ssh:` line `sshLine` (line 6). */
const withSsh = (sshLine: string): string => `sites:
  lab: {}
hosts:
  s1:
    driver: ssh
    ${sshLine}
    site: lab
`
const brief = (issues: SpecIssue[]): Array<[number, number, string, string]> => issues.map(i => [i.line, i.column, i.field, i.message])

t.test('good values parse; hostKey as a key line or a fingerprint', async t => {
  const a = parseSpec(withSsh(`ssh: { address: server1.example.com, user: ops, key: /k, hostKey: "${PUB}" }`), '/specs/s.yaml')
  t.equal(a.hosts.s1?.ssh?.hostKey, PUB)
  t.equal(a.hosts.s1?.ssh?.user, 'ops')
  const b = parseSpec(withSsh(`ssh: { address: 192.0.2.10, key: /k, hostKey: "${FP}" }`), '/specs/s.yaml')
  t.equal(b.hosts.s1?.ssh?.hostKey, FP)
})

t.test('an option-looking user or address, a bad host key: each reported at its place', async t => {
  const line = 'ssh: { address: -oProxyCommand=x, user: -oProxyCommand=y, key: /k, hostKey: SHA256:nope }'
  const col = (s: string): number => 5 + line.indexOf(s)
  const got = brief(specIssues(withSsh(line), '/specs/s.yaml'))
  t.same(got.map(g => g.slice(0, 3)), [
    [6, col('-oProxyCommand=x'), 'hosts.s1.ssh.address'],
    [6, col('-oProxyCommand=y'), 'hosts.s1.ssh.user'],
    [6, col('SHA256:nope'), 'hosts.s1.ssh.hostKey']
  ])
  t.match(got[0]?.[3], /starts with '-'/)
  t.match(got[1]?.[3], /starts with '-'/)
  t.match(got[2]?.[3], /OpenSSH public key line .* or its fingerprint/)
  t.same(brief(specIssues(withSsh('ssh: { address: "a b", key: /k }'), '/specs/s.yaml')).map(g => g[2]), ['hosts.s1.ssh.address'])
})
