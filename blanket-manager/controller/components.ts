/**
 * What a Controller is made of: its collaborators, passed in as one components object (the
 * real ones are wired by createController in index.ts; unit tests pass in-memory drivers and
 * agents), and the core that its parts (reconcile, migration, wiring, console) share.
 */
import type { CloudDriver, DriverContext, HostRecord } from '../../drivers/cloud.ts'
import type { AgentClient } from '../agent/client.ts'
import type { GuestImageFiles } from '../bootstrap/blanket.ts'
import { NotFoundError, SupercloudError } from '../../core/errors.ts'
import type { OperationOptions, ProgressEvent } from '../../core/progress.ts'
import type { HostSpec, Spec } from '../../core/spec.ts'
import type { EventHub } from '../events/hub.ts'
import type { EventInput } from '../events/schema.ts'
import type { StateStore } from '../state/store.ts'
import type { HostAgent, HostSessions } from './sessions.ts'
import { controllerState, type ControllerState } from './state.ts'
import { bootTimeoutMs, hostConcurrency } from './types.ts'

/** Guest images: built on this machine, put on hosts. */
export interface GuestImages {
  /** The builtin guest image (built once, then from the cache). */
  tiny: (opts: OperationOptions) => Promise<GuestImageFiles>
  /** Puts image files (name on the host -> local path) on a host once; returns their paths there by name. */
  place: (host: string, id: string, files: Record<string, string>, opts: OperationOptions) => Promise<Record<string, string>>
}

/** A created host's setup: the Blanket bootstrap (agent, accel) and its VirtualWire endpoint manager. */
export interface HostSetup<A extends HostAgent = AgentClient> {
  /** The build id of the agent this controller installs (hosts running another are upgraded). */
  wantedAgentBuild: () => Promise<string>
  /** Bootstraps a host the driver made (a real server with `hypervisor: xen` boots into Xen first); returns its agent. */
  bootstrap: (spec: HostSpec, record: HostRecord, tiny: GuestImageFiles | undefined, opts: OperationOptions) => Promise<{ agent: A, accel: { mode: string, reason: string } }>
  /** Starts the host's endpoint manager unless it runs (one that died reconciles from its saved state). */
  endpointManager: (host: string, prefix: string, opts: OperationOptions) => Promise<void>
  /** The host firewall (controller/firewall.ts); absent: hosts get none (in-memory hosts). */
  firewall?: FirewallSetup
  /** Who may log in (controller/access.ts); absent: authorized_keys are left alone (in-memory hosts). */
  access?: AccessSetup
}

/** Puts a supercloud's managed block (access/authorized-keys.ts blockLines) into a host's authorized_keys (access/remote.ts over SSH). */
export interface AccessSetup {
  authorize: (host: string, supercloud: string, block: readonly string[], opts: OperationOptions) => Promise<'changed' | 'unchanged'>
}

/** Installs, amends and removes a supercloud's nftables tables on a host (firewall/apply.ts over SSH). */
export interface FirewallSetup {
  /** Installs the ruleset unless the same one is in place (atomic). */
  install: (host: string, prefix: string, ruleset: string, opts: OperationOptions) => Promise<'installed' | 'unchanged'>
  /** Adds to the installed tables (VXLAN peers); nothing on a host without them. */
  amend: (host: string, prefix: string, nft: string) => Promise<void>
  /** Removes the tables. */
  remove: (host: string, prefix: string) => Promise<void>
}

/** The machine the controller runs on. */
export interface LocalMachine {
  /** The supercloud's SSH key pair in `dir` (made once); returns the private key's path. */
  ensureKey: (dir: string) => Promise<string>
  /** Whether kernel objects with this prefix exist here already (a prefix to avoid). */
  prefixTaken: (prefix: string) => boolean
}

/** A Controller's collaborators. `A`: the agent client type (AgentClient for real hosts). */
export interface ControllerComponents<A extends HostAgent = AgentClient> {
  /** The supercloud's name. */
  name: string
  /** Its state directory (state.db, keys). */
  dir: string
  store: StateStore
  /** Typed, sequenced events (persisted in the store). */
  events: EventHub
  /** Cloud drivers by name (a host row's `driver`). */
  drivers: Readonly<Record<string, CloudDriver>>
  sessions: HostSessions<A>
  images: GuestImages
  hosts: HostSetup<A>
  local: LocalMachine
  /** Environment for settings (SUPERCLOUD_BOOT_TIMEOUT_MS, SUPERCLOUD_HOST_CONCURRENCY); default process.env. */
  env?: NodeJS.ProcessEnv
  onProgress?: (ev: ProgressEvent) => void
}

/** What the controller's parts share: the components plus the typed state and small helpers. */
export interface ControllerCore<A extends HostAgent = AgentClient> extends ControllerComponents<A> {
  state: ControllerState
  progress: (ev: ProgressEvent) => void
  /** Publishes an event; a failure to record it never fails the operation it describes. */
  emit: (ev: EventInput) => void
  driver: (name: string) => CloudDriver
  /** Driver context: from the spec when given (and remembered), else the remembered one. */
  context: (spec?: Spec) => Promise<DriverContext>
  /** A host's record; NotFoundError when the host was not created. */
  record: (host: string) => HostRecord
  bootTimeoutMs: number
  /** Hosts talked to at once when an operation fans out to many (SUPERCLOUD_HOST_CONCURRENCY, default 16). */
  hostConcurrency: number
}

export function controllerCore<A extends HostAgent> (c: ControllerComponents<A>): ControllerCore<A> {
  const state = controllerState(c.store)
  const bootMs = bootTimeoutMs(c.env)
  const core: ControllerCore<A> = {
    ...c,
    state,
    progress: c.onProgress ?? (() => {}),
    emit: ev => { try { c.events.publish(ev) } catch { /* state closing */ } },
    driver: name => {
      const d = c.drivers[name]
      if (d === undefined) throw new SupercloudError('SC_UNKNOWN_DRIVER', `no driver named '${name}'`)
      return d
    },
    context: async spec => {
      const prefix = c.store.prefix(p => c.local.prefixTaken(p))
      const keyPath = await c.local.ensureKey(c.dir)
      if (spec !== undefined) {
        const ctx: DriverContext = { name: c.name, prefix, dir: c.dir, keyPath, sites: spec.sites, wan: spec.wan, hosts: spec.hosts }
        state.setContext(ctx)
        return { ...ctx, hostKeys: c.store.hostKeyPins, bootTimeoutMs: bootMs }
      }
      const saved = state.context() ?? { sites: {}, wan: { delayMs: 0 } }
      return { name: c.name, prefix, dir: c.dir, keyPath, ...saved, hostKeys: c.store.hostKeyPins, bootTimeoutMs: bootMs }
    },
    record: host => {
      const r = c.store.host(host)?.record
      if (r === undefined) throw new NotFoundError('host', host)
      return r
    },
    bootTimeoutMs: bootMs,
    hostConcurrency: hostConcurrency(c.env)
  }
  return core
}
