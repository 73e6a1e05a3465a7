/**
 * The controller's entry: createController wires the real collaborators (state store, cloud
 * drivers, SSH sessions, event hub, guest images, Blanket bootstrap) into a Controller.
 */
import type { AgentClient } from '../agent/client.ts'
import { lazyDriver, type HostRecord } from '../../drivers/cloud.ts'
import { EventHub } from '../events/hub.ts'
import { supercloudDir } from '../state/paths.ts'
import { openStateStore, stateUrl } from '../state/store.ts'
import { Controller } from './controller.ts'
import { blanketHostSetup, sshGuestImages, thisMachine } from './real.ts'
import { SshSessions } from './sessions.ts'
import type { ControllerOptions } from './types.ts'
import { NotFoundError } from '../../core/errors.ts'
import { supercloudKeyPath } from '../../drivers/local/keys.ts'

export { Controller } from './controller.ts'
export type { ControllerComponents, GuestImages, HostSetup, LocalMachine } from './components.ts'
export type { HostAgent, HostSessions } from './sessions.ts'
export { peerAddress } from './wiring.ts'
export { bootTimeoutMs, type ControllerOptions, type HostStatus, type MigrateOptions, type MigrateResult, type StatusReport, type UpResult, type VmStatus } from './types.ts'

/** The controller of supercloud `spec` (its name, or a spec carrying it), with the real drivers and connections. */
export function createController (spec: string | { name: string }, opts: ControllerOptions = {}): Controller<AgentClient> {
  const name = typeof spec === 'string' ? spec : spec.name
  const dir = supercloudDir(name, opts.env)
  const store = openStateStore(name, dir, stateUrl(opts.state, opts.env))
  const record = (host: string): HostRecord => {
    const r = store.host(host)?.record
    if (r === undefined) throw new NotFoundError('host', host)
    return r
  }
  const sessions = new SshSessions(host => store.host(host)?.record, store.hostKeyPins, supercloudKeyPath(dir))
  return new Controller({
    name,
    dir,
    store,
    events: new EventHub(store),
    // Loaded when first used: the EC2 driver brings the AWS SDK.
    drivers: {
      local: lazyDriver('local', async () => (await import('../../drivers/local/driver.ts')).createLocalDriver()),
      ssh: lazyDriver('ssh', async () => (await import('../../drivers/ssh/driver.ts')).createSshDriver()),
      ec2: lazyDriver('ec2', async () => (await import('../../drivers/ec2/driver.ts')).createEc2Driver())
    },
    sessions,
    images: sshGuestImages(sessions, record),
    hosts: blanketHostSetup(sessions, record),
    local: thisMachine,
    ...(opts.env !== undefined ? { env: opts.env } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {})
  })
}
