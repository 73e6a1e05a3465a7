/**
 * For whoever owns a virtual NIC (the host agent): attach its TAP (or any link) to the bridge
 * of endpoint N, and detach it. Runs `ip` in the caller's network namespace.
 */
import { SupercloudError } from '../../core/errors.ts'
import { endpointBridgeName } from '../types.ts'
import { runCmd } from './kernel.ts'

export interface AttachOptions {
  /** MTU for the attached link; default: the endpoint bridge's MTU. */
  mtu?: number
  /** Run in this named network namespace (`ip -n`); default: the caller's. */
  netns?: string
}

function ip (netns: string | undefined, ...args: string[]): string[] {
  return netns !== undefined ? ['ip', '-n', netns, ...args] : ['ip', ...args]
}

/** MTU of a link, undefined when it does not exist. */
export async function linkMtu (name: string, netns?: string): Promise<number | undefined> {
  try {
    const out = JSON.parse(await runCmd(ip(netns, '-j', 'link', 'show', 'dev', name))) as Array<{ mtu?: number }>
    return out[0]?.mtu
  } catch {
    return undefined
  }
}

/**
 * Enslaves `dev` to endpoint `id`'s bridge, gives it the bridge's MTU (so the guest side never
 * sends frames the VXLAN device would drop) and sets it up. Idempotent. Throws when the
 * endpoint bridge does not exist (create the endpoint first).
 */
export async function attachToEndpoint (prefix: string, id: number, dev: string, opts: AttachOptions = {}): Promise<void> {
  const bridge = endpointBridgeName(prefix, id)
  const mtu = opts.mtu ?? await linkMtu(bridge, opts.netns)
  if (mtu === undefined) throw new EndpointAttachError(`endpoint ${id} has no bridge ${bridge} on this host (create the endpoint first)`)
  await runCmd(ip(opts.netns, 'link', 'set', dev, 'mtu', String(mtu)))
  await runCmd(ip(opts.netns, 'link', 'set', dev, 'master', bridge))
  await runCmd(ip(opts.netns, 'link', 'set', dev, 'up'))
}

/** The endpoint to attach to does not exist on this host. */
export class EndpointAttachError extends SupercloudError {
  constructor (message: string) {
    super('SC_VW_ATTACH', message)
  }
}

/** Takes `dev` off whatever bridge it is on (the endpoint's, typically). */
export async function detachFromEndpoint (dev: string, opts: { netns?: string } = {}): Promise<void> {
  await runCmd(ip(opts.netns, 'link', 'set', dev, 'nomaster'))
}
