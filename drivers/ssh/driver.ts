/**
 * The `ssh` cloud driver: hosts are existing servers reached over SSH (spec.ssh). It makes
 * no networks; creating a host checks it is reachable and enrols it by creating the
 * supercloud's state directory there; destroying it removes that directory.
 */
import { homedir } from 'node:os'
import type { CloudDriver, DriverContext, HostHealth, HostRecord, SshEndpoint } from '../cloud.ts'
import type { HostSpec } from '../../core/spec.ts'
import { HostAuthError, HostUnreachableError, SupercloudError, throwIfAborted } from '../../core/errors.ts'
import { SshConnection, shq } from '../../core/ssh.ts'
import { hostKeyFingerprint } from '../../core/host-keys.ts'

export const DEFAULT_GUEST_BRIDGE = 'scbr0'
const CONNECT_TIMEOUT_MS = 15000

/** A host spec unusable by the ssh driver (no `ssh:` section). */
export class SshDriverError extends SupercloudError {
  constructor (detail: string) {
    super('SC_SSH_DRIVER', detail, { exitCode: 2 })
  }
}

export function sshStateDir (supercloud: string): string {
  return `/var/lib/supercloud/${supercloud}`
}

function expandHome (p: string): string {
  return p === '~' || p.startsWith('~/') ? homedir() + p.slice(1) : p
}

function endpointOf (spec: HostSpec): SshEndpoint {
  if (spec.ssh === undefined) throw new SshDriverError(`host ${spec.name}: driver ssh needs an ssh: section (address, port, user, key)`)
  return withSpecKey(spec, { host: spec.ssh.address, port: spec.ssh.port, username: spec.ssh.user, privateKeyPath: expandHome(spec.ssh.key) })
}

/** The endpoint checking the key the spec's `ssh.hostKey` names, when it names one (else the pin decides). */
function withSpecKey (spec: HostSpec | undefined, ep: SshEndpoint): SshEndpoint {
  const { hostKeys: _, ...rest } = ep
  const fp = spec?.ssh?.hostKey !== undefined ? hostKeyFingerprint(spec.ssh.hostKey) : undefined
  return fp !== undefined ? { ...rest, hostKeys: { fingerprints: [fp], source: `the spec's hosts.${spec?.name ?? ''}.ssh.hostKey` } } : rest
}

/** A created host's endpoint, checking the key the spec names now (an edited ssh.hostKey applies at once). */
function currentEndpoint (ctx: DriverContext, record: HostRecord): SshEndpoint {
  const spec = ctx.hosts?.[record.name]
  return spec !== undefined ? withSpecKey(spec, record.ssh) : record.ssh
}

/** Prefixes commands with `sudo -n` for non-root users. */
function privileged (ep: SshEndpoint, command: string): string {
  return ep.username === 'root' ? command : `sudo -n sh -c ${shq(command)}`
}

async function withConnection<T> (ctx: DriverContext, name: string, ep: SshEndpoint, fn: (c: SshConnection) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const conn = await SshConnection.connect(name, ep, { timeoutMs: CONNECT_TIMEOUT_MS, ...(signal !== undefined ? { signal } : {}), ...(ctx.hostKeys !== undefined ? { pins: ctx.hostKeys } : {}) })
  try {
    return await fn(conn)
  } finally {
    conn.close()
  }
}

export function createSshDriver (): CloudDriver {
  return {
    name: 'ssh',

    async ensureNetwork () { /* existing servers: nothing to make */ },

    async destroyNetwork () { /* nothing was made */ },

    async createHost (ctx: DriverContext, spec: HostSpec, opts) {
      const ep = endpointOf(spec)
      const stateDir = sshStateDir(ctx.name)
      throwIfAborted(opts?.signal, `creating host ${spec.name}`)
      opts?.onProgress?.({ subject: `host ${spec.name}`, phase: 'ssh', message: `connecting to ${ep.username}@${ep.host}:${ep.port}` })
      await withConnection(ctx, spec.name, ep, async c => {
        await c.exec('true')
        await c.exec(privileged(ep, `mkdir -p ${shq(stateDir)}`))
      }, opts?.signal)
      const record: HostRecord = {
        name: spec.name,
        site: spec.site,
        driver: 'ssh',
        address: ep.host,
        ssh: ep,
        stateDir,
        guestBridge: spec.ssh?.guestBridge ?? DEFAULT_GUEST_BRIDGE,
        driverData: {}
      }
      return record
    },

    /** running: reachable and enrolled; gone: reachable, state directory absent; unreachable otherwise. */
    async describeHost (ctx, record): Promise<HostHealth> {
      try {
        return await withConnection(ctx, record.name, currentEndpoint(ctx, record), async c => {
          const r = await c.exec(`test -d ${shq(record.stateDir)}`, { allowFailure: true, timeoutMs: CONNECT_TIMEOUT_MS })
          return r.code === 0 ? 'running' : 'gone'
        })
      } catch (err) {
        if (err instanceof HostUnreachableError || err instanceof HostAuthError) return 'unreachable'
        throw err
      }
    },

    async destroyHost (ctx, record, opts) {
      opts?.onProgress?.({ subject: `host ${record.name}`, phase: 'destroy', message: `removing ${record.stateDir}` })
      try {
        await withConnection(ctx, record.name, currentEndpoint(ctx, record), async c => {
          await c.exec(privileged(record.ssh, `rm -rf ${shq(record.stateDir)}`))
        }, opts?.signal)
      } catch (err) {
        // A server that is gone or no longer lets us in has nothing of ours left to remove.
        if (err instanceof HostUnreachableError || err instanceof HostAuthError) return
        throw err
      }
    }
  }
}
