/**
 * virtualwire/endpoint/daemon.ts runs its main when node starts it: from the sources, and as
 * its own bundle (how hosts run it, blanket-manager/agent/bundle.ts); never as one module of
 * the CLI's bundle, which defines SUPERCLOUD_CLI_BUNDLE (scripts/cli-bundle.sh). Without
 * arguments its main prints the usage and exits 2.
 */
import t from 'tap'
import { build } from 'esbuild'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../../helpers/sources.ts'

interface Ran { code: number, stderr: string }
async function run (argv: string[]): Promise<Ran> {
  return await new Promise(resolve => {
    execFile(argv[0] as string, argv.slice(1), { cwd: ROOT, timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stderr })
    })
  })
}

// Inside the checkout, so the bundles find node_modules (fuse-native stays external).
mkdirSync(join(ROOT, 'dist'), { recursive: true })
const dir = mkdtempSync(join(ROOT, 'dist', 'test-daemon-entry-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

async function bundle (name: string, define: Record<string, string>): Promise<string> {
  const outfile = join(dir, `${name}.mjs`)
  await build({ entryPoints: [join(ROOT, 'virtualwire/endpoint/daemon.ts')], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile, define, logLevel: 'silent' })
  return outfile
}

t.test('started from the sources, it runs', async t => {
  const r = await run([process.execPath, '--import', 'tsx', join(ROOT, 'virtualwire/endpoint/daemon.ts')])
  t.equal(r.code, 2)
  t.match(r.stderr, /^usage: daemon\.ts --root DIR/)
})

t.test('started as its own bundle, it runs', async t => {
  const r = await run([process.execPath, await bundle('own', {})])
  t.equal(r.code, 2)
  t.match(r.stderr, /^usage: daemon\.ts --root DIR/)
})

t.test('as a module of the CLI\'s bundle, it does not, even when that file is the program', async t => {
  const r = await run([process.execPath, await bundle('cli', { SUPERCLOUD_CLI_BUNDLE: 'true' })])
  t.equal(r.code, 0)
  t.equal(r.stderr, '')
})
