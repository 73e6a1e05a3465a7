/**
 * `supercloud serve` assembled: the controller as a long-lived service. One EventHub on the
 * supercloud's state (following what other processes publish), the live model, the stats
 * poller, the dashboard built in memory, and the HTTP/WebSocket server. Start order: hub,
 * model (replayed from history), dashboard build, server, poller; stop is the reverse.
 */
import type { Controller } from '../controller/index.ts'
import { buildDashboard } from '../dashboard/build.ts'
import { EventHub, type EventHubOptions } from '../events/hub.ts'
import { LiveModel } from '../events/model.ts'
import { StatsPoller } from './poller.ts'
import { startServer, type RunningServer } from './server.ts'
import { ensureToken, removeServeInfo, writeServeInfo } from './token.ts'

export interface ServeOptions extends EventHubOptions {
  host?: string
  port?: number
  /** Stats poll interval; 0 turns the poller off. */
  pollMs?: number
  /** Start the poller at once (default true); a standby `serve` starts it when it becomes the leader (leader.ts). */
  startPoller?: boolean
  /** How often to look for events other processes stored. */
  followMs?: number
  highWaterBytes?: number
  log?: (line: string) => void
}

export interface Serving {
  server: RunningServer
  hub: EventHub
  model: LiveModel
  poller?: StatsPoller
  token: string
  /** URL to open, with the token. */
  dashboardUrl: string
  stop: () => Promise<void>
}

/** Folds the stored history into a fresh model (oldest first). */
export function modelFromHistory (hub: EventHub): LiveModel {
  const model = new LiveModel()
  let since = 0
  for (;;) {
    const page = hub.list(since, {}, 2000)
    for (const ev of page) model.apply(ev)
    const last = page[page.length - 1]
    if (last === undefined || page.length < 2000) return model
    since = last.seq
  }
}

export async function runServe (c: Controller, opts: ServeOptions = {}): Promise<Serving> {
  const log = opts.log ?? (() => {})
  const hub = new EventHub(c.store, opts)
  const model = modelFromHistory(hub)
  hub.tap(ev => model.apply(ev))
  hub.follow(opts.followMs)
  const token = ensureToken(c.dir)
  const assets = await buildDashboard()
  const pollMs = opts.pollMs ?? 5000
  const poller = pollMs > 0
    ? new StatsPoller(c, hub, {
      intervalMs: pollMs,
      onError: err => log(`poll: ${err.message}`),
      onRejected: err => log(err.message)
    })
    : undefined
  const server = await startServer({
    hub,
    token,
    model,
    assets,
    ...(opts.host !== undefined ? { host: opts.host } : {}),
    ...(opts.port !== undefined ? { port: opts.port } : {}),
    ...(opts.highWaterBytes !== undefined ? { highWaterBytes: opts.highWaterBytes } : {}),
    ...(opts.queueLimit !== undefined ? { queueLimit: opts.queueLimit } : {}),
    status: async () => await c.status(),
    cachedStatus: () => poller?.status,
    openConsole: async vm => await c.openConsole(vm),
    operations: { running: () => c.store.operations({ running: true }), cancel: (id, by) => c.store.requestCancel(id, by) },
    sites: () => c.state.context()?.sites ?? {}
  })
  writeServeInfo(c.dir, { url: server.url, host: server.host, port: server.port, pid: process.pid, started: new Date().toISOString() })
  if (opts.startPoller !== false) poller?.start()
  let stopped = false
  return {
    server,
    hub,
    model,
    ...(poller !== undefined ? { poller } : {}),
    token,
    dashboardUrl: `${server.url}/?token=${token}`,
    stop: async () => {
      if (stopped) return
      stopped = true
      await poller?.stop()
      hub.close()
      await server.close()
      removeServeInfo(c.dir)
    }
  }
}
