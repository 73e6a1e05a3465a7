/**
 * Who may log in to the hosts, applied at every `up` (issue 16): each ready host's
 * authorized_keys gets the supercloud's managed block (access/authorized-keys.ts) holding the
 * key of the controller running `up`, the spec's `operators:` and the operators granted with
 * `supercloud access grant` (the state's operators table). A host that does not answer keeps its
 * block until the next `up` reaches it; another host key stops `up`.
 */
import { readFile } from 'node:fs/promises'
import type { DriverContext, HostRecord } from '../../drivers/cloud.ts'
import { HostAuthError, HostUnreachableError } from '../../core/errors.ts'
import type { ProgressEvent } from '../../core/progress.ts'
import type { Spec } from '../../core/spec.ts'
import { mapLimited } from '../../core/concurrency.ts'
import { blockLines, CONTROLLER_ENTRY, OperatorKeyError, parsePublicKey, type AuthorizedEntry } from '../access/authorized-keys.ts'
import type { ControllerCore } from './components.ts'
import type { HostAgent } from './sessions.ts'

/** The keys of the block: the controller's own, the spec's operators, the granted ones (each key once, first name wins). */
export async function accessEntries (spec: Spec, controllerPub: string, granted: ReadonlyArray<{ name: string, publicKey: string }>): Promise<AuthorizedEntry[]> {
  const out: AuthorizedEntry[] = [{ name: CONTROLLER_ENTRY, key: parsePublicKey(controllerPub, "the supercloud's own public key") }]
  for (const op of spec.operators ?? []) {
    const where = `${spec.file}: ${op.field}${op.keyFile !== undefined ? ` (${op.keyFile})` : ''}`
    let text = op.key
    if (text === undefined && op.keyFile !== undefined) {
      text = await readFile(op.keyFile, 'utf8').catch((err: unknown) => { throw new OperatorKeyError(`cannot read the public key file: ${(err as Error).message}`, where) })
    }
    out.push({ name: op.name, key: parsePublicKey(text ?? '', where) })
  }
  for (const g of granted) out.push({ name: g.name, key: parsePublicKey(g.publicKey, `operator ${g.name} in the state`) })
  return out
}

export class HostAccess<A extends HostAgent> {
  constructor (private readonly c: ControllerCore<A>) {}

  /** Puts the managed block on every ready host (nothing when the host setup has no access port: in-memory hosts). */
  async sync (spec: Spec, ctx: DriverContext, progress: (ev: ProgressEvent) => void): Promise<void> {
    const port = this.c.hosts.access
    if (port === undefined) return
    const entries = await accessEntries(spec, await readFile(`${ctx.keyPath}.pub`, 'utf8'), this.c.store.operators())
    const block = blockLines(this.c.name, entries)
    const names = [...new Set(entries.map(e => e.name))].join(', ')
    const hosts = this.c.store.hosts().filter(h => h.status === 'ready' && h.record !== undefined)
    await mapLimited(hosts, this.c.hostConcurrency, async h => {
      try {
        if (await port.authorize(h.name, this.c.name, block, {}) === 'changed') progress({ subject: `host ${h.name}`, phase: 'keys', message: `authorized_keys: ${block.length - 2} key(s) (${names})` })
      } catch (err) {
        if (!(err instanceof HostUnreachableError || err instanceof HostAuthError)) throw err
        progress({ subject: `host ${h.name}`, phase: 'keys', message: `authorized_keys not updated: ${err.message}` })
      }
    })
  }

  /** Removes the block from a host before its driver lets it go, where the machine outlives the host (`ssh` servers). */
  async remove (host: HostRecord): Promise<void> {
    const port = this.c.hosts.access
    if (port === undefined || host.driver !== 'ssh') return
    await port.authorize(host.name, this.c.name, [], {})
  }
}
