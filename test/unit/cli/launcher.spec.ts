/**
 * bin/supercloud runs the CLI's bundle (dist/cli/, scripts/cli-bundle.sh): built on first use,
 * rebuilt before it runs when a source is newer, built once when many CLIs start at once, and
 * the sources through tsx (with a one-line warning) when it cannot be built, never a stale
 * bundle. Each test runs the launcher in a temporary copy of the checkout (node_modules linked).
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync, existsSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from '../../helpers/sources.ts'

const COPIED = ['bin', 'scripts', 'blanket-manager', 'core', 'drivers', 'virtualwire', 'overdriver', 'images', 'package.json', 'tsconfig.json']
const DESCRIPTION = "'Run your own cloud on top of other clouds.'"

interface Ran { code: number, stdout: string, stderr: string }

async function run (argv: string[], cwd: string): Promise<Ran> {
  return await new Promise(resolve => {
    execFile(argv[0] as string, argv.slice(1), { cwd, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
      resolve({ code, stdout, stderr })
    })
  })
}

const copy = mkdtempSync(join(tmpdir(), 'sc-launcher-'))
t.teardown(() => { rmSync(copy, { recursive: true, force: true }) })
for (const f of COPIED) cpSync(join(ROOT, f), join(copy, f), { recursive: true })
symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(copy, 'node_modules'))

const launcher = (...args: string[]): Promise<Ran> => run([join(copy, 'bin', 'supercloud'), ...args], copy)
const sources = (...args: string[]): Promise<Ran> => run([process.execPath, '--import', 'tsx', join(copy, 'blanket-manager', 'cli', 'main.ts'), ...args], copy)
const build = (): string => readlinkSync(join(copy, 'dist', 'cli'))
const builds = (): string[] => readdirSync(join(copy, 'dist')).filter(f => /^cli-\w+$/.test(f))
function editDescription (text: string): void {
  const main = join(copy, 'blanket-manager', 'cli', 'main.ts')
  const src = readFileSync(main, 'utf8')
  writeFileSync(main, src.replace(/\.description\('Run your own cloud[^']*'\)/, `.description('Run your own cloud on top of other clouds.${text}')`))
}

t.test('the first run builds the bundle; its --help and --version print what the sources print', async t => {
  t.ok(readFileSync(join(copy, 'blanket-manager', 'cli', 'main.ts'), 'utf8').includes(DESCRIPTION), 'the description this test edits is there')
  const help = await launcher('--help')
  t.ok(existsSync(join(copy, 'dist', 'cli', 'main.js')), 'dist/cli/main.js was built')
  t.equal(help.stderr, '', 'no warning: the bundle ran')
  t.match(help.stdout, /Usage: supercloud/)
  t.same(help, await sources('--help'), '--help: same output and exit code as the sources')
  // The CLI has no --version today: both answer "unknown option" with exit code 1.
  t.same(await launcher('--version'), await sources('--version'), '--version: same output and exit code as the sources')
})

t.test('a source newer than the bundle is rebuilt before the CLI runs; a current one is not', async t => {
  const before = build()
  t.equal((await launcher('--help')).stdout.includes(' (edited)'), false)
  t.equal(build(), before, 'nothing changed: the same build runs')
  editDescription(' (edited)')
  const r = await launcher('--help')
  t.match(r.stdout, /Run your own cloud on top of other clouds\. \(edited\)/, 'the edit shows at once')
  t.not(build(), before, 'from a new build')
})

t.test('CLIs started together while the bundle is stale build it once and all run it', async t => {
  editDescription(' (together)')
  const before = builds()
  const rs = await Promise.all([1, 2, 3, 4, 5].map(async () => await launcher('--help')))
  for (const r of rs) {
    t.equal(r.code, 0)
    t.equal(r.stderr, '')
    t.match(r.stdout, /\(together\)/)
  }
  t.same(builds().filter(b => !before.includes(b)), [build()], 'one new build')
})

t.test('when the bundle cannot be built, the sources run through tsx with a one-line warning, never the stale bundle', async t => {
  editDescription(' (unbuilt)')
  // The build lock is a directory: the build fails at its first step.
  rmSync(join(copy, 'dist', '.cli-build.lock'), { force: true })
  mkdirSync(join(copy, 'dist', '.cli-build.lock'))
  const r = await launcher('--help')
  t.equal(r.code, 0)
  t.match(r.stdout, /\(unbuilt\)/, 'the edited sources ran, not the stale bundle')
  t.match(r.stderr, /^supercloud: could not build the CLI bundle .*; running the sources through tsx\n$/, 'one warning line')
  t.same({ ...r, stderr: '' }, await sources('--help'), 'and printed what the sources print')
})
