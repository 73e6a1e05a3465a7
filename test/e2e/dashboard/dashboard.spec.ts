/**
 * The dashboard as an SRE sees it, against a real supercloud: one namespaced host with one
 * TCG guest brought up by the CLI, `supercloud serve` as a child process, Debian's Chromium
 * (headless, driven by playwright-core) on the printed URL. The page shows the host and the
 * VM; an overload event published into the supercloud's history (as Overdriver would, from
 * another process) shows in the timeline and on the VM's paging graph; the web console runs
 * a command in the guest. Also: `supercloud events` prints the history.
 */
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { CLI, ROOT, sandbox } from '../../helpers/cli.ts'
import { oneHostSpec, tinyVmLine } from '../../helpers/specs.ts'
import { EventHub } from '../../../blanket-manager/events/hub.ts'
import { StateStore } from '../../../blanket-manager/state/store.ts'

const CHROMIUM = '/usr/bin/chromium'
const NAME = 'dash'
const sb = sandbox(t, oneHostSpec({
  name: NAME,
  subnet: '198.18.12.0/24',
  vms: tinyVmLine('web1', { host: 'h1', memory: '128M', address: '198.18.12.101/24' })
}), NAME)

// bin/supercloud once cli/main.ts registers serve/events; until then the same commands through serve-entry.ts.
const mainHasServe = readFileSync(join(ROOT, 'blanket-manager', 'cli', 'main.ts'), 'utf8').includes('registerServe')
function startCli (args: string[]): ChildProcess {
  const argv = mainHasServe ? [CLI, '-f', sb.spec, ...args] : ['node', '--import', 'tsx', join(import.meta.dirname, 'serve-entry.ts'), '-f', sb.spec, ...args]
  return spawn(argv[0] ?? 'node', argv.slice(1), { env: sb.env, cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
}
async function runCli (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  const child = startCli(args)
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number>(resolve => child.on('exit', c => resolve(c ?? 1)))
  return { code, stdout, stderr }
}

if (!existsSync(CHROMIUM)) {
  t.test('dashboard in a browser', { skip: 'Debian\'s chromium is not installed (apt-get install chromium)' }, async () => {})
} else {
  let serve: ChildProcess | undefined
  let serveErr = ''
  let url = ''
  let ctx: BrowserContext | undefined
  let page: Page
  const profile = mkdtempSync(join(tmpdir(), 'sc-chromium-'))
  t.teardown(async () => {
    await ctx?.close().catch(() => {})
    if (serve !== undefined && serve.exitCode === null) {
      serve.kill('SIGTERM')
      await new Promise(resolve => serve?.once('exit', resolve))
    }
    rmSync(profile, { recursive: true, force: true })
  })

  t.test('up: one host, one guest', async t => {
    const r = await sb.run(['up'])
    t.equal(r.code, 0, r.stderr)
    sb.prefix(NAME)
  })

  t.test('serve prints the dashboard URL with its token and listens on loopback', async t => {
    serve = startCli(['serve', '--listen', '127.0.0.1:0', '--interval', '2'])
    serve.stderr?.on('data', (d: Buffer) => { serveErr += d.toString() })
    url = await new Promise<string>((resolve, reject) => {
      let out = ''
      serve?.stdout?.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /at (http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+)/.exec(out)
        if (m !== null) resolve(m[1] ?? '')
      })
      serve?.once('exit', code => reject(new Error(`serve exited ${code}: ${serveErr}`)))
    })
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/)
    const refused = await fetch(url.replace(/\?token=.*/, 'api/status'))
    t.equal(refused.status, 401, 'no token, no access')
  })

  t.test('the page shows the site, the host and the VM with its memory', async t => {
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1400 }
    })
    page = ctx.pages()[0] ?? await ctx.newPage()
    await page.goto(url)
    await page.locator('.host[data-host="h1"]').waitFor({ timeout: 60000 })
    t.match(await page.locator('.site[data-site="s1"] h3').innerText(), /site s1\s+198\.18\.12\.0\/24/)
    t.match(await page.locator('.host[data-host="h1"]').innerText(), /h1\s+running · ready · local/)
    const row = page.locator('tr[data-vm="web1"]')
    await row.waitFor()
    t.match(await row.innerText(), /web1\s+running\s+128 MiB\s+128 MiB/)
    // The poller's vm.stats events fill in the resident figure.
    await page.waitForFunction(() => /MiB/.test(document.querySelector('tr[data-vm="web1"] td[data-field="resident"]')?.textContent ?? ''), undefined, { timeout: 60000 })
    t.pass('resident memory shown')
    t.equal(await page.locator('#conn').getAttribute('data-state'), 'live')
    t.equal(new URL(page.url()).search, '', 'the token is taken out of the address bar')
  })

  t.test('an overload appears on the graph and in the timeline', async t => {
    // Published from this process into the supercloud's history, as Overdriver or `up` would.
    const store = StateStore.open(join(sb.stateRoot, NAME))
    const hub = new EventHub(store)
    hub.publish({ type: 'overload.threshold', vm: 'web1', host: 'h1', data: { threshold: 800 } })
    hub.publish({ type: 'vm.stats', host: 'h1', vm: 'web1', data: { residentBytes: 100 << 20, balloonBytes: 128 << 20, pagingRate: 300 } })
    hub.publish({ type: 'overload.started', host: 'h1', vm: 'web1', data: { pagingRate: 1500, threshold: 800 } })
    hub.publish({ type: 'overload.classified', host: 'h1', vm: 'web1', data: { classification: 'sustained', pagingRate: 1700 } })
    hub.close()
    store.close()
    const item = page.locator('#timeline li[data-type="overload.started"]')
    await item.waitFor({ timeout: 30000 })
    t.match(await item.innerText(), /overload\.started\s+h1\/web1\s+overload started: paging 1500 pages\/s > threshold 800/)
    t.match(await page.locator('#timeline li[data-type="overload.classified"]').innerText(), /classified sustained/)
    const graph = page.locator('#graph-web1')
    await page.waitForFunction(() => Number(document.querySelector('#graph-web1 polyline.rate')?.getAttribute('data-last')) === 1700)
    t.equal(await graph.locator('line.threshold').getAttribute('data-threshold'), '800', 'threshold line drawn')
    t.ok(Number(await graph.locator('polyline.rate').getAttribute('data-samples')) >= 3, 'the rate samples are plotted')
    t.equal(await graph.locator('rect.overload').count(), 1, 'the overload is shaded')
    // The rate line goes above the threshold line (smaller y is higher).
    const ys = (await graph.locator('polyline.rate').getAttribute('points') ?? '').split(' ').map(p => Number(p.split(',')[1]))
    const thresholdY = Number(await graph.locator('line.threshold').getAttribute('y1'))
    t.ok(Math.min(...ys) < thresholdY, 'the paging rate crosses the threshold on the graph')
    t.match(await page.locator('tr[data-vm="web1"]').innerText(), /overloaded \(sustained\)/)
    await page.screenshot({ path: join(sb.dir, 'dashboard.png'), fullPage: true })
  })

  t.test('the web console echoes typed input', async t => {
    await page.locator('button.console-open[data-vm="web1"]').click()
    await page.locator('#console-section[data-state="open"]').waitFor({ timeout: 30000 })
    await page.locator('#terminal .xterm').click()
    await page.keyboard.press('Enter')
    await page.keyboard.type('echo hello-$((6*7))')
    await page.keyboard.press('Enter')
    await page.waitForFunction(() => /hello-42/.test(document.querySelector('#terminal .xterm-rows')?.textContent ?? ''), undefined, { timeout: 60000 })
    const text = await page.locator('#terminal .xterm-rows').innerText()
    t.match(text, /echo hello-\$\(\(6\*7\)\)/, 'the typed line is echoed')
    t.match(text, /^hello-42\s*$/m, 'and the guest ran it')
    await page.screenshot({ path: join(sb.dir, 'console.png'), fullPage: true })
  })

  t.test('supercloud events prints the history; --vm and --json filter and format', async t => {
    const r = await runCli(['events', '--since', '0'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /overload\.started\s+h1\/web1\s+overload started: paging 1500 pages\/s > threshold 800/)
    t.match(r.stdout, /agent\.up\s+h1/)
    t.notMatch(r.stdout, /vm\.stats/, 'stats are left out unless asked for')
    const j = await runCli(['events', '--json', '--vm', 'web1', '--type', 'overload.*'])
    t.equal(j.code, 0, j.stderr)
    const evs = j.stdout.trim().split('\n').map(l => JSON.parse(l) as { type: string, vm: string, seq: number, schema: number })
    t.same(evs.map(e => e.type), ['overload.threshold', 'overload.started', 'overload.classified'])
    t.ok(evs.every(e => e.vm === 'web1' && e.schema === 1))
    t.ok(evs[0] !== undefined && evs[1] !== undefined && evs[0].seq < evs[1].seq)
  })

  t.test('supercloud events --follow prints new events as they are stored', async t => {
    // --since the current head: events stored while the CLI is still starting (slow on a busy machine) are not missed.
    const head = (() => { const st = StateStore.open(join(sb.stateRoot, NAME)); const h = new EventHub(st); const b = h.bounds().head; h.close(); st.close(); return b })()
    const child = startCli(['events', '--follow', '--json', '--type', 'migration.*', '--since', String(head)])
    let out = ''
    let err = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise(resolve => child.once('exit', resolve))
    // Wait until it is following (its first poll ran), then publish from another process.
    await new Promise(resolve => setTimeout(resolve, 1500))
    const store = StateStore.open(join(sb.stateRoot, NAME))
    const hub = new EventHub(store)
    hub.publish({ type: 'migration.started', vm: 'web1', data: { migration: 'm-e2e', from: 'h1', to: 'h2' } })
    hub.publish({ type: 'migration.progress', vm: 'web1', data: { migration: 'm-e2e', transferredBytes: 64 << 20, totalBytes: 128 << 20 } })
    hub.close()
    store.close()
    while (out.split('\n').filter(Boolean).length < 2) {
      if (child.exitCode !== null) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    t.equal(child.exitCode, null, `still following: ${err}`)
    const evs = out.trim().split('\n').filter(Boolean).map(l => JSON.parse(l) as { type: string })
    t.same(evs.map(e => e.type), ['migration.started', 'migration.progress'])
    child.kill('SIGINT')
    t.equal(await exited, 0, 'Ctrl-C ends it cleanly')
    // The dashboard shows the migration with its progress bar.
    const bar = page.locator('.migration[data-migration="m-e2e"] progress')
    await bar.waitFor({ timeout: 30000 })
    t.equal(await bar.getAttribute('value'), '0.5')
  })

  t.test('serve stops on SIGTERM and removes serve.json', async t => {
    serve?.kill('SIGTERM')
    const code = await new Promise<number | null>(resolve => serve?.once('exit', resolve))
    t.equal(code, 0, serveErr)
    t.notOk(existsSync(join(sb.stateRoot, NAME, 'serve.json')))
  })
}
