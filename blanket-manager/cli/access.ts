/**
 * `supercloud access grant|revoke|list`: the operators who may log in to the hosts, kept in the
 * state (public keys only) and applied to every host's authorized_keys at the next `up`
 * (controller/access.ts). Registered on the program by cli/main.ts.
 */
import { readFile } from 'node:fs/promises'
import type { Command } from 'commander'
import { NotFoundError, SupercloudError } from '../../core/errors.ts'
import type { Spec } from '../../core/spec.ts'
import { CONTROLLER_ENTRY, OPERATOR_NAME, OperatorKeyError, parsePublicKey } from '../access/authorized-keys.ts'
import type { OperatorRow } from '../state/store.ts'
import { operatorName } from './operations.ts'
import type { CliHelpers } from './serve.ts'

const absent = (name: string): never => {
  throw new SupercloudError('SC_NOT_FOUND', `supercloud ${name} has no state yet: \`supercloud up\` makes it (\`operators:\` in the spec authorizes keys from the first up)`, { exitCode: 2 })
}

/** The lines of `access list`: the spec's operators and the granted ones. */
export function accessListing (spec: Spec | undefined, granted: readonly OperatorRow[]): string[] {
  const rows: string[][] = [['NAME', 'KEY', 'FROM']]
  const fp = (text: string | undefined): string => {
    try { const k = parsePublicKey(text ?? '', ''); return `${k.type} ${k.fingerprint}` } catch { return '(key file read at up)' }
  }
  for (const o of spec?.operators ?? []) rows.push([o.name, fp(o.key), `spec ${o.field}`])
  for (const g of granted) rows.push([g.name, fp(g.publicKey), `granted by ${g.by} ${g.added}`])
  if (rows.length === 1) return ['no operators (the hosts authorize the supercloud\'s own key only); `supercloud access grant NAME KEYFILE` adds one']
  const w = rows[0]?.map((_c, i) => Math.max(...rows.map(r => (r[i] ?? '').length))) ?? []
  return rows.map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(w[i] ?? 0)).join('  '))
}

export function registerAccess (program: Command, helpers: CliHelpers): void {
  const access = program.command('access').description('who may log in to the hosts over SSH: operators\' public keys, applied to every host at the next `up`')

  access.command('grant <name> <keyfile>')
    .description('let operator <name> log in to every host with the private key of <keyfile> (an OpenSSH public key: ssh-ed25519, ecdsa, or ssh-rsa of 2048 bits or more); applied at the next `up`')
    .action(async (name: string, keyFile: string, _o: unknown, cmd: Command) => {
      if (!OPERATOR_NAME.test(name) || name === CONTROLLER_ENTRY) throw new OperatorKeyError(`'${name}' is not an operator name: letters, digits, . _ @ - (up to 64, not '${CONTROLLER_ENTRY}')`, 'access grant')
      const text = await readFile(keyFile, 'utf8').catch((err: unknown) => { throw new OperatorKeyError(`cannot read the public key file: ${(err as Error).message}`, keyFile) })
      const key = parsePublicKey(text, keyFile)
      await helpers.withController(cmd, async c => {
        const by = operatorName()
        c.store.putOperator({ name, publicKey: text.trim(), added: new Date().toISOString(), by })
        c.store.journal('access.granted', name, { fingerprint: key.fingerprint, by })
        process.stderr.write(`access grant: operator ${name} (${key.type} ${key.fingerprint}) may log in to the hosts from the next \`supercloud up\`\n`)
      }, false, absent)
    })

  access.command('revoke <name>')
    .description('remove operator <name> granted with `access grant`; its key leaves every host at the next `up`')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await helpers.withController(cmd, async (c, spec) => {
        if (!c.store.deleteOperator(name)) {
          if (spec?.operators?.some(o => o.name === name) === true) throw new SupercloudError('SC_NOT_FOUND', `operator ${name} is in the spec's operators:, not granted; remove it from the spec`, { exitCode: 2 })
          throw new NotFoundError('granted operator', name)
        }
        c.store.journal('access.revoked', name, { by: operatorName() })
        process.stderr.write(`access revoke: operator ${name} removed; its key leaves the hosts at the next \`supercloud up\`\n`)
      }, false, absent)
    })

  access.command('list')
    .description('the operators whose keys the hosts authorize: from the spec\'s operators: and granted with `access grant`')
    .action(async (_o: unknown, cmd: Command) => {
      await helpers.withController(cmd, async (c, spec) => {
        process.stdout.write(accessListing(spec, c.store.operators()).join('\n') + '\n')
      }, false, absent)
    })
}
