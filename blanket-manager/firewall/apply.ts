/**
 * Applying a host firewall (rules.ts makes the text) with `nft -f` on the host, over any
 * CommandRunner (the host's SSH connection). Installing is atomic (one nft transaction) and
 * idempotent: the installed text is kept in `<state dir>/firewall.nft` and a host whose tables
 * are in place with the same text is left alone.
 */
import type { CommandRunner } from '../../core/exec.ts'
import { SupercloudError } from '../../core/errors.ts'
import { shq } from '../../core/ssh.ts'
import { firewallTable, removeFirewallRuleset } from './rules.ts'

/** The host has no `nft` (Debian package nftables). */
const NO_NFT = 90
/** `nft -f` refused the ruleset. */
const REFUSED = 91

export class FirewallError extends SupercloudError {
  constructor (code: 'SC_FIREWALL_NFT_MISSING' | 'SC_FIREWALL_APPLY', host: string, detail: string) {
    super(code, `host firewall on ${host}: ${detail}`)
  }
}

function fail (host: string, code: number | null, stderr: string): never {
  if (code === NO_NFT) throw new FirewallError('SC_FIREWALL_NFT_MISSING', host, 'nft is not installed (Debian package nftables)')
  throw new FirewallError('SC_FIREWALL_APPLY', host, `nft refused the ruleset (exit ${code ?? 'none'}): ${stderr.trim().slice(-600)}`)
}

/** Installs `ruleset` (hostFirewallRuleset) unless the same one is in place; says which. */
export async function installFirewall (runner: CommandRunner, prefix: string, stateDir: string, ruleset: string, signal?: AbortSignal): Promise<'installed' | 'unchanged'> {
  const file = shq(`${stateDir}/firewall.nft`)
  const script = [
    `command -v nft >/dev/null 2>&1 || exit ${NO_NFT}`,
    `mkdir -p ${shq(stateDir)}`,
    `cat > ${file}.new`,
    `if cmp -s ${file}.new ${file} && nft list table inet ${firewallTable(prefix)} >/dev/null 2>&1; then rm -f ${file}.new; echo unchanged; exit 0; fi`,
    `nft -f ${file}.new || { rm -f ${file}.new; exit ${REFUSED}; }`,
    `mv ${file}.new ${file}`,
    'echo installed'
  ].join('\n')
  const r = await runner.run(script, { input: ruleset, okStatuses: 'any', ...(signal !== undefined ? { signal } : {}) })
  if (r.code !== 0) fail(runner.host, r.code, r.stderr)
  return r.stdout.includes('unchanged') ? 'unchanged' : 'installed'
}

/** Runs nft statements that amend the installed tables (admitPeersRuleset); a host without them has nothing to amend. */
export async function amendFirewall (runner: CommandRunner, prefix: string, nft: string): Promise<void> {
  if (nft === '') return
  const r = await runner.run(`command -v nft >/dev/null 2>&1 || exit 0\nnft list table inet ${firewallTable(prefix)} >/dev/null 2>&1 || exit 0\nnft -f - || exit ${REFUSED}`, { input: nft, okStatuses: 'any' })
  if (r.code !== 0) fail(runner.host, r.code, r.stderr)
}

/** Removes the supercloud's tables and the kept text (nothing to do when absent). */
export async function removeFirewall (runner: CommandRunner, prefix: string, stateDir: string): Promise<void> {
  const r = await runner.run(`command -v nft >/dev/null 2>&1 || exit 0\nnft -f - || exit ${REFUSED}\nrm -f ${shq(`${stateDir}/firewall.nft`)}`, { input: removeFirewallRuleset(prefix), okStatuses: 'any' })
  if (r.code !== 0) fail(runner.host, r.code, r.stderr)
}
