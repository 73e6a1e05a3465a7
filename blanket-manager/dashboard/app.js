// The supercloud dashboard (browser side). Bundled by esbuild when `supercloud serve` starts
// (dashboard/build.ts). It reads /api/status and /api/info, follows /api/events over a
// WebSocket (resuming from the last seq it saw, re-reading state when the server disconnected
// it), folds events into the same LiveModel the server uses, and opens a guest's serial
// console with xterm.js over /api/console/<vm>.
import { Terminal } from '@xterm/xterm'
import { LiveModel } from '../events/model.ts'
import { describeEvent, formatBytes } from '../events/format.ts'

const params = new URLSearchParams(location.search)
const token = params.get('token') ?? sessionStorage.getItem('sc_token') ?? ''
if (token !== '') sessionStorage.setItem('sc_token', token)
if (params.has('token')) history.replaceState(null, '', location.pathname)

const auth = { headers: { authorization: `Bearer ${token}` } }
const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id))

/** @type {{ name: string, hosts: any[], vms: any[] } | undefined} */
let status
/** @type {Record<string, any>} */
let sites = {}
const model = new LiveModel()
/** @type {any[]} events for the timeline, newest last */
const timeline = []
const TIMELINE_MAX = 400
/** Operations (up, down, migrate) running now, from any terminal: id → { kind, by, subject, step }. */
const operations = new Map()

/** Element builder: h('td', { class: 'num' }, 'text', child) */
function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else el.setAttribute(k, String(v))
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return el
}
const SVG = 'http://www.w3.org/2000/svg'
function s (tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) el.setAttribute(k, String(v))
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  return el
}

async function getJson (path) {
  const r = await fetch(path, auth)
  if (r.status === 401) throw new Error('unauthorized: open the URL `supercloud serve` printed (it carries the token)')
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`)
  return await r.json()
}

let statusLoading = false
async function refreshStatus () {
  if (statusLoading) return
  statusLoading = true
  try {
    status = await getJson('/api/status')
    $('name').textContent = status.name
    scheduleRender()
  } catch (err) {
    setConn('closed', String(err.message ?? err))
  } finally {
    statusLoading = false
  }
}

function setConn (state, text) {
  const el = $('conn')
  el.dataset.state = state
  el.textContent = text
}

// ------------------------------------------------------------------ events

let ws
let retryMs = 500
function connectEvents (since) {
  const q = new URLSearchParams({ token })
  if (since !== undefined) q.set('since', String(since))
  ws = new WebSocket(`${wsBase}/api/events?${q}`)
  ws.onopen = () => { retryMs = 500 }
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data)
    if (msg.kind === 'hello') setConn('replaying', `replaying from ${msg.since}…`)
    else if (msg.kind === 'caught-up') setConn('live', 'live')
    else if (msg.kind === 'gap') addGap(msg.from, msg.to)
    else if (msg.kind === 'event') onEvent(msg.event)
  }
  ws.onclose = (e) => {
    if (e.code === 4401) { setConn('closed', e.reason || 'unauthorized'); return }
    setConn('closed', e.code === 4429 ? 'fell behind; re-reading state…' : `disconnected (${e.code}${e.reason ? `: ${e.reason}` : ''}); retrying…`)
    // The server's rule: a subscriber it dropped must re-read state, then resume from its last seq.
    setTimeout(() => { void refreshStatus(); connectEvents(model.lastSeq) }, retryMs)
    retryMs = Math.min(retryMs * 2, 10000)
  }
}

const LIFECYCLE = /^(host|vm|agent)\.(?!stats)/
function trackOperation (ev) {
  const d = ev.data
  if (ev.type === 'operation.started') operations.set(d.operation, { kind: d.kind, by: d.by, subject: d.subject, step: '' })
  else if (ev.type === 'operation.progress' && operations.has(d.operation)) operations.get(d.operation).step = `${d.subject}: ${d.message}`
  else if (/^operation\.(completed|failed|cancelled)$/.test(ev.type)) operations.delete(d.operation)
}

async function cancelOperation (id, button) {
  button.disabled = true
  button.textContent = 'cancelling…'
  const r = await fetch(`/api/operations/${id}/cancel`, { method: 'POST', ...auth })
  if (!r.ok) button.textContent = r.status === 409 ? 'already ended' : `HTTP ${r.status}`
}

function onEvent (ev) {
  model.apply(ev)
  if (ev.type.startsWith('operation.')) trackOperation(ev)
  if (ev.type !== 'vm.stats') {
    timeline.push(ev)
    if (timeline.length > TIMELINE_MAX) timeline.splice(0, timeline.length - TIMELINE_MAX)
  }
  if (LIFECYCLE.test(ev.type) || ev.type === 'migration.completed') void refreshStatus()
  $('head').textContent = `seq ${ev.seq}`
  scheduleRender()
}

function addGap (from, to) {
  timeline.push({ gap: true, from, to })
  scheduleRender()
}

// ------------------------------------------------------------------ rendering

let renderPending = false
function scheduleRender () {
  if (renderPending) return
  renderPending = true
  requestAnimationFrame(() => { renderPending = false; render() })
}

function render () {
  renderInfra()
  renderGraphs()
  renderTopology()
  renderMigrations()
  renderOperations()
  renderTimeline()
}

function renderOperations () {
  const rows = [...operations.entries()].map(([id, o]) => {
    const button = h('button', { type: 'button', 'data-operation': id }, 'cancel')
    button.onclick = () => { void cancelOperation(id, button) }
    return h('div', { class: 'operation', 'data-operation': id },
      h('strong', {}, `${o.kind}${o.subject ? ` ${o.subject}` : ''}`), ` ${id} by ${o.by} `, h('span', { class: 'muted' }, o.step), ' ', button)
  })
  $('operations').replaceChildren(...(rows.length === 0 ? [h('p', { class: 'muted' }, 'none running')] : rows))
}

function vmNames () {
  const names = new Set((status?.vms ?? []).map(v => v.name))
  for (const k of model.vms.keys()) names.add(k)
  return [...names].sort()
}

function renderInfra () {
  if (status === undefined) return
  const bySite = new Map()
  for (const hst of status.hosts) {
    if (!bySite.has(hst.site)) bySite.set(hst.site, [])
    bySite.get(hst.site).push(hst)
  }
  for (const name of Object.keys(sites)) if (!bySite.has(name)) bySite.set(name, [])
  const out = []
  for (const [site, hosts] of [...bySite.entries()].sort()) {
    const subnet = sites[site]?.subnet
    out.push(h('div', { class: 'site', 'data-site': site },
      h('h3', {}, `site ${site}`, subnet ? h('span', { class: 'muted' }, ` ${subnet}`) : null),
      hosts.length === 0 ? h('p', { class: 'muted' }, 'no hosts') : hosts.map(renderHost)))
  }
  if (status.hosts.length === 0) out.push(h('p', { class: 'muted' }, 'no hosts yet: run `supercloud up`'))
  $('sites').replaceChildren(...out)
}

function renderHost (hst) {
  const live = model.hosts.get(hst.name)
  const vms = status.vms.filter(v => (model.vms.get(v.name)?.host ?? v.host) === hst.name)
  const badges = []
  if (hst.accel) badges.push(h('span', { class: 'badge', title: hst.accelReason ?? '' }, hst.accel))
  if (live?.agent === 'down') badges.push(h('span', { class: 'badge bad', title: live.agentReason ?? '' }, 'agent down'))
  if (live?.spotDeadline) badges.push(h('span', { class: 'badge warn' }, `spot reclaim ${live.spotDeadline}`))
  return h('div', { class: 'host', 'data-host': hst.name, 'data-health': hst.health },
    h('div', {}, h('span', { class: 'title' }, hst.name), ' ', h('span', { class: 'muted' }, `${hst.health} · ${hst.status} · ${hst.driver}${hst.address ? ` · ${hst.address}` : ''}`), ' ', badges),
    vms.length === 0 ? h('p', { class: 'muted' }, 'no VMs') : h('table', {},
      h('thead', {}, h('tr', {}, ['VM', 'state', 'requested', 'allocated', 'balloon', 'resident', 'swapped local', 'swapped remote', 'paging', 'Overdriver', ''].map(t => h('th', {}, t)))),
      h('tbody', {}, vms.map(renderVmRow))))
}

function renderVmRow (v) {
  const live = model.vms.get(v.name)
  const st = live?.stats
  const rate = live?.samples[live.samples.length - 1]?.rate ?? st?.pagingRate
  const ov = live?.overload
  const od = ov ? `overloaded${ov.classification ? ` (${ov.classification})` : ''}${ov.swap ? ', swap on' : ''}${ov.migrationTarget ? `, → ${ov.migrationTarget}` : ''}` : ''
  return h('tr', { 'data-vm': v.name, 'data-overloaded': ov !== undefined },
    h('td', {}, v.name),
    h('td', { class: `state-${v.state}` }, v.state, v.error ? h('span', { class: 'muted', title: v.error }, ' ⚠') : null),
    h('td', { class: 'num' }, formatBytes(v.memory?.requestedBytes)),
    h('td', { class: 'num' }, formatBytes(v.memory?.allocatedBytes)),
    h('td', { class: 'num' }, formatBytes(st?.balloonBytes)),
    h('td', { class: 'num', 'data-field': 'resident' }, formatBytes(st?.residentBytes)),
    h('td', { class: 'num' }, formatBytes(st?.swappedLocalBytes)),
    h('td', { class: 'num' }, formatBytes(st?.swappedRemoteBytes)),
    h('td', { class: 'num' }, rate === undefined ? '—' : `${Math.round(rate)}/s`),
    h('td', {}, od ? h('span', { class: 'badge bad' }, od) : ''),
    h('td', {}, h('button', { type: 'button', class: 'console-open', 'data-vm': v.name, onclick: () => openConsole(v.name) }, 'console')))
}

const GW = 560
const GH = 130
const PAD = 28
function renderGraphs () {
  const names = vmNames()
  const out = names.map(name => {
    const live = model.vms.get(name)
    const samples = live?.samples ?? []
    const threshold = model.thresholdFor(name)
    const now = Date.now()
    const t0 = Math.min(samples[0]?.ts ?? now, now - 2 * 60 * 1000)
    const t1 = Math.max(now, samples[samples.length - 1]?.ts ?? now)
    const maxRate = Math.max(1, threshold ?? 0, ...samples.map(p => p.rate)) * 1.15
    const x = (t) => PAD + (t - t0) / Math.max(1, t1 - t0) * (GW - PAD - 6)
    const y = (r) => GH - 16 - r / maxRate * (GH - 26)
    const svg = s('svg', { width: GW, height: GH, viewBox: `0 0 ${GW} ${GH}`, role: 'img', 'aria-label': `paging rate of ${name}` })
    for (const o of live?.overloads ?? []) {
      const x0 = x(Math.max(o.from, t0))
      const x1 = x(o.to ?? t1)
      svg.append(s('rect', { class: 'overload', x: x0, y: 4, width: Math.max(2, x1 - x0), height: GH - 20 }))
    }
    svg.append(s('line', { x1: PAD, y1: GH - 16, x2: GW - 4, y2: GH - 16, stroke: '#ccd' }))
    svg.append(s('text', { x: 2, y: y(maxRate / 1.15) + 4 }, String(Math.round(maxRate / 1.15))))
    svg.append(s('text', { x: 2, y: GH - 13 }, '0'))
    if (threshold !== undefined) {
      svg.append(s('line', { class: 'threshold', 'data-threshold': threshold, x1: PAD, x2: GW - 4, y1: y(threshold), y2: y(threshold) }))
      svg.append(s('text', { x: GW - 90, y: y(threshold) - 3 }, `threshold ${Math.round(threshold)}`))
    }
    const pts = samples.map(p => `${x(p.ts).toFixed(1)},${y(p.rate).toFixed(1)}`)
    if (pts.length === 1) pts.push(`${x(t1).toFixed(1)},${y(samples[0].rate).toFixed(1)}`)
    svg.append(s('polyline', { class: 'rate', 'data-samples': samples.length, 'data-last': samples[samples.length - 1]?.rate, points: pts.join(' ') }))
    if (samples.length === 0) svg.append(s('text', { x: GW / 2 - 60, y: GH / 2 }, 'no paging data yet'))
    svg.append(s('text', { x: PAD, y: GH - 2 }, new Date(t0).toLocaleTimeString()))
    svg.append(s('text', { x: GW - 60, y: GH - 2 }, new Date(t1).toLocaleTimeString()))
    return h('div', { class: 'graph', id: `graph-${name}`, 'data-vm': name, 'data-overloaded': live?.overload !== undefined },
      h('div', { class: 'label' }, name, live?.overload ? h('span', { class: 'badge bad' }, ' overloaded') : null), svg)
  })
  $('graphs').replaceChildren(...(out.length > 0 ? out : [h('p', { class: 'muted' }, 'no VMs')]))
}

function renderTopology () {
  const conns = [...model.connectors.values()].filter(c => c.state === 'up')
  if (conns.length === 0) { $('topology').replaceChildren(h('p', { class: 'muted' }, 'no connectors')); return }
  const hosts = [...new Set([...(status?.hosts ?? []).map(x => x.name), ...conns.flatMap(c => c.hosts)])].sort()
  const W = 420
  const HH = Math.max(120, hosts.length * 50)
  const pos = new Map(hosts.map((n, i) => [n, { x: i % 2 === 0 ? 70 : W - 70, y: 30 + i * ((HH - 60) / Math.max(1, hosts.length - 1)) }]))
  const svg = s('svg', { width: W, height: HH, viewBox: `0 0 ${W} ${HH}` })
  for (const c of conns) {
    const [a, b] = c.hosts
    const pa = pos.get(a)
    const pb = pos.get(b ?? a)
    if (pa && pb) {
      svg.append(s('line', { class: 'connector', x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y, stroke: '#2f6fdf', 'stroke-width': 2 }))
      svg.append(s('text', { x: (pa.x + pb.x) / 2 - 20, y: (pa.y + pb.y) / 2 - 4 }, `#${c.id}`))
    }
  }
  for (const [n, p] of pos) {
    svg.append(s('circle', { cx: p.x, cy: p.y, r: 16, fill: '#eef1f6', stroke: '#6b7385' }))
    svg.append(s('text', { x: p.x - 18, y: p.y + 30 }, n))
  }
  $('topology').replaceChildren(svg, h('table', {},
    h('thead', {}, h('tr', {}, ['connector', 'wire', 'hosts'].map(t => h('th', {}, t)))),
    h('tbody', {}, conns.map(c => h('tr', { 'data-connector': c.id }, h('td', {}, `#${c.id}`), h('td', {}, c.wire), h('td', {}, c.hosts.join(' ↔ ')))))))
}

function renderMigrations () {
  const ms = [...model.migrations.values()].slice(-10).reverse()
  if (ms.length === 0) { $('migrations').replaceChildren(h('p', { class: 'muted' }, 'none')); return }
  $('migrations').replaceChildren(...ms.map(m => {
    const ratio = m.state === 'completed' ? 1 : m.totalBytes > 0 ? Math.min(1, m.transferredBytes / m.totalBytes) : 0
    return h('div', { class: 'migration', 'data-migration': m.id, 'data-state': m.state },
      h('div', { class: 'what' }, `${m.vm}: ${m.from} → ${m.to} · ${m.state}${m.phase ? ` (${m.phase})` : ''} · ${Math.round(ratio * 100)}% of ${formatBytes(m.totalBytes)}${m.error ? ` · ${m.error}` : ''}`),
      h('progress', { max: 1, value: ratio }))
  }))
}

function renderTimeline () {
  const items = timeline.slice().reverse().map(ev => {
    if (ev.gap) return h('li', { class: 'gap' }, `events ${ev.from}–${ev.to} were pruned from the history`)
    const where = [ev.host, ev.vm].filter(Boolean).join('/')
    return h('li', { 'data-seq': ev.seq, 'data-type': ev.type, 'data-family': ev.type.split('.')[0] },
      h('span', { class: 'seq' }, ev.seq), ' ',
      h('span', { class: 'muted' }, new Date(ev.ts).toLocaleTimeString()), ' ',
      h('span', { class: 'type' }, ev.type), ' ',
      h('span', {}, where), ' ',
      h('span', { class: 'what' }, describeEvent(ev)))
  })
  $('timeline').replaceChildren(...items)
}

// ------------------------------------------------------------------ console

let term
let consoleWs
function openConsole (vm) {
  consoleWs?.close()
  $('console-section').hidden = false
  $('console-vm').textContent = vm
  $('console-state').textContent = 'connecting…'
  if (term === undefined) {
    term = new Terminal({ cursorBlink: true, fontSize: 13, rows: 22, cols: 100, scrollback: 2000 })
    term.open($('terminal'))
    term.onData(d => { if (consoleWs?.readyState === WebSocket.OPEN) consoleWs.send(new TextEncoder().encode(d)) })
  }
  term.reset()
  const sock = new WebSocket(`${wsBase}/api/console/${encodeURIComponent(vm)}?token=${encodeURIComponent(token)}`)
  sock.binaryType = 'arraybuffer'
  consoleWs = sock
  sock.onopen = () => {
    $('console-state').textContent = 'connected (serial console; the guest shell may need Enter)'
    $('console-section').dataset.state = 'open'
    term.focus()
  }
  sock.onmessage = (m) => term.write(new Uint8Array(m.data))
  sock.onclose = (e) => {
    if (consoleWs !== sock) return
    $('console-section').dataset.state = 'closed'
    $('console-state').textContent = `closed${e.reason ? `: ${e.reason}` : ''}`
  }
  $('console-section').scrollIntoView({ block: 'nearest' })
}
$('console-close').addEventListener('click', () => {
  consoleWs?.close()
  consoleWs = undefined
  $('console-section').hidden = true
})

// ------------------------------------------------------------------ start

async function start () {
  let info
  try {
    info = await getJson('/api/info')
  } catch (err) {
    setConn('closed', String(err.message ?? err))
    return
  }
  sites = info.sites ?? {}
  $('head').textContent = `seq ${info.head}`
  // Recent history rebuilds the graphs and the timeline; older events are in `supercloud events`.
  connectEvents(Math.max(0, info.head - 3000))
  await refreshStatus()
  setInterval(() => { void refreshStatus() }, 15000)
  setInterval(scheduleRender, 5000)
}
void start()
