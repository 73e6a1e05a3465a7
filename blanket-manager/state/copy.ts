/**
 * Moving a supercloud's state between stores (`supercloud state push` / `pull`): what describes
 * the world (meta keys, networks, hosts, VMs, pinned host keys, operators) is copied in one transaction of
 * the target, while the source's lock is held (no `up`, `down` or move changes it meanwhile).
 * The history (operations, journal, events) stays where it was: sequence numbers are the
 * store's own, and a copy would break the `events --since` of whoever follows the source.
 */
import { StateExistsError } from './errors.ts'
import type { StateStore } from './types.ts'

/** How much was copied. */
export interface CopyCount { meta: number, networks: number, hosts: number, vms: number, hostKeys: number, operators: number }

/** Copies `from` into `to` (which must hold no supercloud yet: StateExistsError naming `name`). */
export function copyState (name: string, from: StateStore, to: StateStore): CopyCount {
  if (!to.isEmpty() || to.allMeta().length > 0) throw new StateExistsError(name, to.path)
  from.lock('state copy')
  try {
    const meta = from.allMeta()
    const snap = from.snapshot()
    const keys = from.hostKeys()
    const operators = from.operators()
    to.transaction(() => {
      for (const m of meta) to.setMeta(m.key, m.value)
      for (const n of snap.networks) to.putNetwork(n)
      for (const h of snap.hosts) to.putHost(h)
      for (const v of snap.vms) to.putVm(v)
      for (const k of keys) to.pinHostKey(k.host, k.fingerprint, k.publicKey, k.since)
      for (const o of operators) to.putOperator(o)
    })
    return { meta: meta.length, networks: snap.networks.length, hosts: snap.hosts.length, vms: snap.vms.length, hostKeys: keys.length, operators: operators.length }
  } finally {
    from.unlock()
  }
}
