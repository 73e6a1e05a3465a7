/**
 * Builds the dashboard's files in memory when `supercloud serve` starts: esbuild bundles
 * app.js (hand-written browser JavaScript) with the shared pure modules it imports
 * (events/model.ts, events/format.ts) and xterm.js; index.html, style.css and xterm's CSS are
 * served as they are.
 */
import { build } from 'esbuild'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import type { Asset } from '../server/server.ts'
import { projectPath } from '../../core/root.ts'

const here = projectPath('blanket-manager', 'dashboard')

export async function buildDashboard (): Promise<Map<string, Asset>> {
  const out = await build({
    entryPoints: [join(here, 'app.js')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: false,
    sourcemap: false,
    logLevel: 'silent'
  })
  const js = out.outputFiles[0]?.text ?? ''
  const require = createRequire(import.meta.url)
  const xtermCss = join(require.resolve('@xterm/xterm/package.json'), '..', 'css', 'xterm.css')
  const assets = new Map<string, Asset>()
  assets.set('/index.html', { type: 'text/html; charset=utf-8', body: await readFile(join(here, 'index.html')) })
  assets.set('/style.css', { type: 'text/css; charset=utf-8', body: await readFile(join(here, 'style.css')) })
  assets.set('/xterm.css', { type: 'text/css; charset=utf-8', body: await readFile(xtermCss) })
  assets.set('/app.js', { type: 'text/javascript; charset=utf-8', body: js })
  return assets
}
