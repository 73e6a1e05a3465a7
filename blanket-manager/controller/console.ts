/** A VM's serial console and a host's SSH details, for `supercloud console` and `supercloud ssh`. */
import type { ClientChannel } from 'ssh2'
import type { HostRecord } from '../../drivers/cloud.ts'
import { NotFoundError } from '../../core/errors.ts'
import type { ControllerCore } from './components.ts'
import type { HostAgent } from './sessions.ts'

/** Opens a raw byte stream to a VM's serial console (the agent names its socket; SSH forwards it). */
export async function openConsole<A extends HostAgent> (c: ControllerCore<A>, vm: string): Promise<ClientChannel> {
  const row = c.store.vm(vm)
  if (row === undefined) throw new NotFoundError('vm', vm)
  const agent = await c.sessions.agent(row.host)
  const path = await agent.consoleSocket(vm)
  const ssh = await c.sessions.connect(row.host)
  return await ssh.openUnixSocket(path)
}

/** The host record of a host, for `supercloud ssh`. */
export function hostRecord<A extends HostAgent> (c: ControllerCore<A>, name: string): HostRecord {
  return c.record(name)
}
