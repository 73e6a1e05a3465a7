/**
 * The worker thread of bridge.ts, as source text: node-postgres runs here, on its own event
 * loop, while the calling thread waits. It is evaluated (`new Worker(code, { eval: true })`)
 * rather than loaded from a file so the bundled CLI (scripts/cli-bundle.sh) needs no extra file.
 *
 * Each request comes on `port` ({ op, conn, sql, params }); the reply is posted on `port`,
 * then `flag[0]` is set to 1 and notified. Connections: `data` (every query and transaction),
 * `lock` (advisory locks only, opened on first use; its session holds them) and `listen`
 * (op 'listen': LISTEN on a channel; each notification's payload is posted on `notify`).
 */
export const WORKER_SOURCE = String.raw`
const { workerData } = require('node:worker_threads')
const { Client } = require(workerData.pg)
const port = workerData.port
const notify = workerData.notify
const flag = new Int32Array(workerData.flag)
const conns = {}
let lostLock = undefined
function reply (m) { port.postMessage(m); Atomics.store(flag, 0, 1); Atomics.notify(flag, 0) }
function info (e) { return { message: String((e && e.message) || e), code: e && e.code !== undefined ? String(e.code) : undefined } }
async function conn (name) {
  if (conns[name] !== undefined) return conns[name]
  if (name === 'lock' && lostLock !== undefined) throw lostLock
  const c = new Client({ connectionString: workerData.url, connectionTimeoutMillis: workerData.connectTimeoutMs, application_name: 'supercloud ' + name })
  c.on('error', e => { if (name === 'lock') lostLock = e; delete conns[name] })
  await c.connect()
  await c.query('SET search_path TO ' + workerData.schema)
  conns[name] = c
  return c
}
port.on('message', async m => {
  try {
    if (m.op === 'close') {
      for (const c of Object.values(conns)) await c.end().catch(() => {})
      reply({ ok: true, rows: [], rowCount: 0 })
      return
    }
    if (m.op === 'listen') {
      const l = await conn('listen')
      l.removeAllListeners('notification')
      l.on('notification', n => { notify.postMessage(n.payload || '') })
      await l.query('LISTEN ' + m.channel)
      reply({ ok: true, rows: [], rowCount: 0 })
      return
    }
    const c = await conn(m.conn)
    const r = await c.query(m.sql, m.params)
    const last = Array.isArray(r) ? r[r.length - 1] : r
    reply({ ok: true, rows: last.rows || [], rowCount: last.rowCount || 0 })
  } catch (e) {
    reply({ ok: false, error: info(e) })
  }
})
`
