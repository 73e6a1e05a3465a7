/**
 * An outsider's tools against a migration's listeners (migration-tls.spec.ts): a plain TCP
 * client, a TLS-PSK client with a key of its own, an NBD client (qemu-img) with or without
 * credentials, and a recording relay put between the source and the destination to see what
 * crosses the wire.
 */
import { execFile } from 'node:child_process'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'

/**
 * Types `line` once on a guest's serial console socket (a shell that answered already) and
 * resolves with the output once `expect` appears. Unlike consoleRoundTrip it never types the
 * line again: commands here must not run twice.
 */
export async function typeOnce (socketPath: string, line: string, expect: string, timeoutMs: number): Promise<string> {
  return await new Promise((resolve, reject) => {
    let got = ''
    const s = connect({ path: socketPath }, () => { s.write(`${line}\n`) })
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`'${expect}' not seen within ${timeoutMs} ms; got: ${JSON.stringify(got.slice(-500))}`)) }, timeoutMs)
    s.on('data', (b: Buffer) => {
      got += b.toString('utf8')
      if (got.includes(expect)) { clearTimeout(timer); s.end(); resolve(got) }
    })
    s.on('error', err => { clearTimeout(timer); reject(err) })
  })
}

/** A free TCP port on 127.0.0.1 (not one of `avoid`). */
export async function freePort (avoid: number[] = []): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = createServer()
      srv.once('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const a = srv.address()
        srv.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
      })
    })
    if (!avoid.includes(port)) return port
  }
}

/** Connects, writes `bytes`, and reports how the server ended it: closed (with what it answered first) or still open after `ms`. */
export async function plainWrite (port: number, bytes: Buffer, ms = 15_000): Promise<{ closed: boolean, answer: Buffer }> {
  return await new Promise(resolve => {
    const parts: Buffer[] = []
    const s = connect(port, '127.0.0.1', () => { s.write(bytes) })
    const done = (closed: boolean): void => { clearTimeout(timer); s.destroy(); resolve({ closed, answer: Buffer.concat(parts) }) }
    const timer = setTimeout(() => { done(false) }, ms)
    s.on('data', (b: Buffer) => parts.push(b))
    s.on('error', () => { done(true) })
    s.on('close', () => { done(true) })
  })
}

/** A TLS 1.2 PSK handshake as `identity` with `key` (hex): 'secure' when the server accepted it, else the error. */
export async function pskHandshake (port: number, identity: string, key: string, ms = 15_000): Promise<string> {
  return await new Promise(resolve => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port,
      maxVersion: 'TLSv1.2',
      ciphers: 'ECDHE-PSK-AES128-CBC-SHA256:ECDHE-PSK-AES256-CBC-SHA384:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:DHE-PSK-AES128-GCM-SHA256',
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk: Buffer.from(key, 'hex'), identity })
    })
    const done = (what: string): void => { clearTimeout(timer); s.destroy(); resolve(what) }
    const timer = setTimeout(() => { done('timeout') }, ms)
    s.on('secureConnect', () => { done('secure') })
    s.on('error', err => { done(`error: ${err.message}`) })
    s.on('close', () => { done('closed') })
  })
}

/** `qemu-img info` of export `name` on the NBD server at `port`, with PSK credentials when given; the exit code and output. */
export async function nbdInfo (port: number, name: string, creds?: { dir: string, identity: string }): Promise<{ code: number, out: string }> {
  const args = ['info']
  if (creds !== undefined) args.push('--object', `tls-creds-psk,id=probe,dir=${creds.dir},endpoint=client,username=${creds.identity}`)
  args.push('--image-opts', `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${port},export=${name}${creds !== undefined ? ',tls-creds=probe' : ''}`)
  return await new Promise(resolve => {
    execFile('qemu-img', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
      resolve({ code, out: `${stdout}${stderr}` })
    })
  })
}

/**
 * A relay on a port of its own forwarding to `targetPort`, counting the bytes it carries both
 * ways and whether `needle` appeared in them (searched across chunk boundaries).
 */
export class RecordingRelay {
  bytes = 0
  seen = false
  private readonly sockets = new Set<Socket>()
  private constructor (private readonly server: Server, readonly port: number, private readonly needle: Buffer) {}

  static async open (targetPort: number, needle: Buffer): Promise<RecordingRelay> {
    const server = createServer()
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => { const a = server.address(); resolve(typeof a === 'object' && a !== null ? a.port : 0) })
    })
    const r = new RecordingRelay(server, port, needle)
    server.on('connection', c => {
      const u = connect(targetPort, '127.0.0.1')
      for (const s of [c, u]) { r.sockets.add(s); s.on('close', () => r.sockets.delete(s)); s.on('error', () => { c.destroy(); u.destroy() }) }
      r.watch(c, u)
      r.watch(u, c)
    })
    return r
  }

  private watch (from: Socket, to: Socket): void {
    let tail = Buffer.alloc(0)
    from.on('data', (b: Buffer) => {
      this.bytes += b.length
      if (!this.seen) {
        const hay = Buffer.concat([tail, b])
        if (hay.includes(this.needle)) this.seen = true
        tail = hay.subarray(Math.max(0, hay.length - this.needle.length + 1))
      }
      to.write(b)
    })
    from.on('end', () => { to.end() })
  }

  async close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>(resolve => { this.server.close(() => resolve()) })
  }
}
