/**
 * Local unix sockets whose connections are carried to a unix socket on a remote host over SSH
 * (direct-streamlocal): e.g. a guest's console socket in a Xen dom0, for consoleRoundTrip.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { SshConnection } from '../../core/ssh.ts'

export class UnixForwards {
  private readonly servers: Server[] = []
  private readonly sockets = new Set<Socket>()

  /** `dir`: a local directory for the sockets (short: unix socket paths are limited to 107 bytes). */
  constructor (private readonly dir: string) {}

  /** A new local socket path; each connection to it opens a channel to `remote` through `ssh()`. */
  async forward (ssh: () => Promise<SshConnection>, remote: string): Promise<string> {
    const local = join(this.dir, `fwd-${this.servers.length}.sock`)
    const server = createServer(sock => {
      this.sockets.add(sock)
      sock.on('close', () => this.sockets.delete(sock))
      ssh().then(async s => await s.openUnixSocket(remote)).then(ch => {
        // The local side may have gone while the channel opened (a test that timed out): an
        // open channel would keep the SSH connection, and this process, alive.
        if (sock.destroyed) { ch.close(); return }
        sock.pipe(ch)
        ch.pipe(sock)
        sock.on('close', () => ch.close())
        ch.on('close', () => sock.destroy())
      }, () => sock.destroy())
    })
    this.servers.push(server)
    await new Promise<void>(resolve => server.listen(local, resolve))
    return local
  }

  /** Stops listening and drops the open connections. */
  close (): void {
    for (const s of this.servers) { s.close(); s.unref() }
    for (const s of this.sockets) s.destroy()
  }
}
