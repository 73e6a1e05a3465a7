/**
 * `supercloud serve`: the controller as a long-lived service (dashboard, WebSocket events,
 * web console, Prometheus metrics). Registered on the program by cli/main.ts.
 */
import { Option, type Command } from 'commander'
import type { Controller } from '../controller/index.ts'
import { SupercloudError } from '../../core/errors.ts'
import type { Spec } from '../../core/spec.ts'

/** What the commands need from cli/main.ts. */
export interface CliHelpers {
  withController: <T>(cmd: Command, fn: (c: Controller, spec: Spec | undefined) => Promise<T>, needSpec?: boolean, ifAbsent?: (name: string) => T) => Promise<T>
}

export const DEFAULT_LISTEN = '127.0.0.1:7878'

/** `host:port`, `:port`, `port` or `[v6]:port` → parts. */
export function parseListen (text: string): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d+)$/.exec(text.trim())
  const port = Number(m?.[3])
  if (m === null || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new SupercloudError('SC_USAGE', `--listen ${text}: expected HOST:PORT (e.g. 127.0.0.1:7878, or :0 for any free port)`, { exitCode: 2 })
  }
  const host = m[1] ?? m[2] ?? ''
  return { host: host === '' ? '127.0.0.1' : host, port }
}

export function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

export function registerServe (program: Command, helpers: CliHelpers): void {
  program.command('serve')
    .description('run the controller as a service: dashboard, live events over WebSocket, web console, /metrics, evacuation of ec2 hosts EC2 interrupts (Ctrl-C stops)')
    .addOption(new Option('--listen <host:port>', 'address to listen on').default(DEFAULT_LISTEN))
    .addOption(new Option('--interval <seconds>', 'how often to poll guests\' memory figures (0: never)').default('5'))
    .option('--public', 'allow listening on a non-loopback address (plain HTTP: put TLS in front)')
    .action(async (o: { listen: string, interval: string, public?: boolean }, cmd: Command) => {
      const { host, port } = parseListen(o.listen)
      if (!isLoopback(host) && o.public !== true) {
        throw new SupercloudError('SC_USAGE', `--listen ${o.listen} is not a loopback address; add --public to serve beyond this machine (the token protects it, but the traffic is plain HTTP)`, { exitCode: 2 })
      }
      const interval = Number(o.interval)
      if (!Number.isFinite(interval) || interval < 0) throw new SupercloudError('SC_USAGE', '--interval must be a number of seconds', { exitCode: 2 })
      await helpers.withController(cmd, async (c, spec) => {
        const log = (line: string): void => { process.stderr.write(`serve: ${line}\n`) }
        const { runServe } = await import('../server/serve.ts')
        const { startOverdriverLoop } = await import('../server/overdriver-loop.ts')
        const { seekLeadership } = await import('../server/leader.ts')
        const { startInterruptionLoop } = await import('../server/interruption-loop.ts')
        const s = await runServe(c, { host, port, pollMs: interval * 1000, log, startPoller: false })
        let od: Awaited<ReturnType<typeof startOverdriverLoop>>
        let spot: Awaited<ReturnType<typeof startInterruptionLoop>>
        // Only the leading serve of the supercloud runs the pollers, the Overdriver loop and the
        // spot-interruption watch (server/leader.ts).
        const leader = seekLeadership(c.store.locks, {
          log,
          onLead: async () => {
            s.poller?.start()
            od = spec !== undefined ? await startOverdriverLoop(c, spec, s.hub, s.poller, log) : undefined
            spot = spec !== undefined ? await startInterruptionLoop(c, spec, s.hub, s.poller, log) : undefined
          }
        })
        process.stdout.write(`supercloud serve: ${c.name} at ${s.dashboardUrl}\n`)
        process.stderr.write(`serve: events ws ${s.server.url.replace(/^http/, 'ws')}/api/events, metrics ${s.server.url}/metrics (token in ${c.dir}/serve-token); Ctrl-C stops\n`)
        await new Promise<void>(resolve => {
          const stop = (): void => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve() }
          process.on('SIGINT', stop)
          process.on('SIGTERM', stop)
        })
        process.stderr.write('serve: stopping\n')
        od?.stop()
        spot?.stop()
        leader.stop()
        await s.stop()
      }, false)
    })
}
