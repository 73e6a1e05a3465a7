/**
 * Each operator logs in to the hosts with their own key. A host record made by one operator's
 * `up` names that operator's supercloud key (`<their state dir>/id_ed25519`, the local and EC2
 * drivers); another operator sharing the state (PostgreSQL) uses the key of the same name in
 * their own state directory instead. Keys named by the spec (`ssh.key` of an `ssh` host) are
 * each operator's own path already and are kept.
 */
import { basename, dirname } from 'node:path'
import type { SshEndpoint } from '../../core/ssh.ts'

/** `ep` with this operator's supercloud key when it names another operator's (same file name, in a directory of the same supercloud name). */
export function withOwnKey (ep: SshEndpoint, ownKey: string | undefined): SshEndpoint {
  if (ownKey === undefined || ep.privateKeyPath === ownKey) return ep
  const same = basename(ep.privateKeyPath) === basename(ownKey) && basename(dirname(ep.privateKeyPath)) === basename(dirname(ownKey))
  return same ? { ...ep, privateKeyPath: ownKey } : ep
}
