/**
 * A link that can be cut (postcopy-recovery.spec.ts): TCP relays on 127.0.0.1 put between a
 * migration's source and destination, sharing one switch. Cut, every open connection stops
 * carrying bytes in either direction (nothing is closed or reset: the peers see a silent drop, as
 * behind a firewall dropping packets) and new connections are refused (the route is gone);
 * restored, new connections are carried and the connections held across the cut are reset (their
 * state did not survive the outage, as after a TCP timeout or a middlebox losing its table).
 */
import { connect, createServer, type Server, type Socket } from 'node:net'
import { listenLocal } from './tls-probes.ts'

export class CutLink {
  private down = false
  private readonly legs: Leg[] = []
  /** Bytes carried over all legs (both directions). */
  bytes = 0

  get cut (): boolean { return this.down }

  /** Silently drops the link (held connections stall, new ones are refused). */
  drop (): void {
    this.down = true
    for (const l of this.legs) l.hold()
  }

  restore (): void {
    this.down = false
    for (const l of this.legs) l.reset()
  }

  /** A relay port on 127.0.0.1 leading to `targetPort` over this link. */
  async leg (targetPort: number): Promise<number> {
    const l = await Leg.open(this, targetPort)
    this.legs.push(l)
    if (this.down) l.hold()
    return l.port
  }

  async close (): Promise<void> {
    for (const l of this.legs) await l.close()
  }
}

class Leg {
  private readonly sockets = new Set<Socket>()
  private constructor (private readonly link: CutLink, private readonly server: Server, readonly port: number) {}

  static async open (link: CutLink, targetPort: number): Promise<Leg> {
    const server = createServer()
    const port = await listenLocal(server)
    const leg = new Leg(link, server, port)
    server.on('connection', c => {
      if (link.cut) { c.destroy(); return }
      const u = connect(targetPort, '127.0.0.1')
      for (const s of [c, u]) { leg.sockets.add(s); s.on('close', () => leg.sockets.delete(s)); s.on('error', () => { c.destroy(); u.destroy() }) }
      leg.pipe(c, u)
      leg.pipe(u, c)
    })
    return leg
  }

  private pipe (from: Socket, to: Socket): void {
    from.on('data', (b: Buffer) => {
      this.link.bytes += b.length
      if (!to.write(b)) { from.pause(); to.once('drain', () => { if (!this.link.cut) from.resume() }) }
    })
    from.on('end', () => { to.end() })
  }

  hold (): void { for (const s of this.sockets) s.pause() }
  reset (): void { for (const s of this.sockets) s.resetAndDestroy() }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { this.server.close(() => resolve()) })
  }
}
