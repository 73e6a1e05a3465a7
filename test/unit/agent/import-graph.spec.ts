/**
 * The CLI (and the controller it loads) never loads the agent's NBD server or page repository:
 * only the host agent serves swap exports and repositories (blanket-manager/agent/overdriver-host.ts
 * loads them on first use). Checked twice: on the static import graph (imports that survive
 * compilation: not `import type`, not imports whose every name is a type) and by running the CLI
 * with a module hook that records every module Node loads. The same for the CLI's bundle
 * (dist/cli/, scripts/cli-bundle.sh), whose build records which sources each chunk holds.
 */
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')

/** Modules `file` loads when it is imported: relative specifiers of imports and re-exports that are not type-only. */
function runtimeImports (file: string): string[] {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS)
  const out: string[] = []
  for (const st of src.statements) {
    let spec: ts.Expression | undefined
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause
      const typeOnly = c !== undefined && (c.isTypeOnly || (c.name === undefined && c.namedBindings !== undefined && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every(e => e.isTypeOnly)))
      if (!typeOnly) spec = st.moduleSpecifier
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier !== undefined) {
      const typeOnly = st.isTypeOnly || (st.exportClause !== undefined && ts.isNamedExports(st.exportClause) && st.exportClause.elements.every(e => e.isTypeOnly))
      if (!typeOnly) spec = st.moduleSpecifier
    }
    if (spec !== undefined && ts.isStringLiteral(spec) && spec.text.startsWith('.')) out.push(resolve(dirname(file), spec.text))
  }
  return out
}

/** Every module reachable from `entry` (repository-relative paths). */
function staticGraph (entry: string): Set<string> {
  const seen = new Set<string>()
  const todo = [resolve(root, entry)]
  for (let f = todo.pop(); f !== undefined; f = todo.pop()) {
    const rel = relative(root, f)
    if (seen.has(rel)) continue
    seen.add(rel)
    todo.push(...runtimeImports(f))
  }
  return seen
}

const forbidden = (m: string): boolean => m === 'overdriver/nbd/server.ts' || m.startsWith('overdriver/repository/') || m === 'overdriver/swap-service.ts'

t.test('the walker sees the heavy modules where they are imported', async t => {
  const g = staticGraph('overdriver/swap-service.ts')
  t.ok(g.has('overdriver/nbd/server.ts'), 'swap-service imports the NBD server')
  t.ok(g.has('overdriver/repository/client.ts'), 'and the repository client')
})

t.test('the controller\'s static import graph reaches the agent client but not the NBD server or page repository', async t => {
  const g = staticGraph('blanket-manager/controller/index.ts')
  t.ok(g.has('blanket-manager/controller/controller.ts'), 'the controller is loaded')
  t.ok(g.has('blanket-manager/agent/client.ts'), 'the agent client is loaded')
  t.same([...g].filter(forbidden), [], 'no NBD server, swap service or repository module')
  t.notOk(g.has('drivers/ec2/driver.ts'), 'the EC2 driver (and the AWS SDK) is loaded only when a host needs it')
})

t.test('the CLI\'s start loads no controller: it is loaded by the commands that need it', async t => {
  const g = staticGraph('blanket-manager/cli/main.ts')
  t.notOk(g.has('blanket-manager/controller/controller.ts'))
  t.same([...g].filter(forbidden), [])
  t.notOk(g.has('blanket-manager/specfile/load.ts'), 'nor the spec loader (yaml, ajv): commands that read a spec load it')
  t.notOk(g.has('blanket-manager/planner/placement.ts'), 'nor the planner')
})

/** A temp dir with a module hook that appends every file URL Node resolves to `log`; `register` is the --import for it. */
function loadRecorder (t: Test): { log: string, register: string, dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sc-import-graph-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const log = join(dir, 'loaded.txt')
  writeFileSync(join(dir, 'hook.mjs'), `import { appendFileSync } from 'node:fs'
export async function resolve (spec, ctx, next) {
  const r = await next(spec, ctx)
  if (r.url.startsWith('file:')) appendFileSync(${JSON.stringify(log)}, r.url + '\\n')
  return r
}
`)
  writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hook.mjs')).href)})\n`)
  writeFileSync(log, '')
  return { log, register: join(dir, 'register.mjs'), dir }
}

t.test('running the CLI loads neither', async t => {
  const { log, register, dir } = loadRecorder(t)
  // `plan` of the local example: the controller and the spec, no host touched (a private state dir).
  await promisify(execFile)(process.execPath, ['--import', 'tsx', '--import', register, join(root, 'blanket-manager/cli/main.ts'), '-f', join(root, 'examples/local.yaml'), 'plan'],
    { cwd: root, env: { ...process.env, SUPERCLOUD_STATE_DIR: join(dir, 'state') } })
  const loaded = new Set(readFileSync(log, 'utf8').split('\n').filter(u => u !== '').map(u => relative(root, fileURLToPath(u))))
  t.ok(loaded.has('blanket-manager/controller/controller.ts'), 'the controller was loaded')
  t.notOk([...loaded].some(m => m.includes('@aws-sdk')), 'the AWS SDK was not loaded (no EC2 host in the spec)')
  t.ok(loaded.has('blanket-manager/agent/overdriver-control.ts'), 'so was the controller\'s import of agent/overdriver-control.ts')
  t.same([...loaded].filter(forbidden), [], 'no NBD server, swap service or repository module was loaded')
})

/** The CLI's bundle (built if stale) and its build's metafile: output chunk -> its imports and the sources it holds. */
interface Meta { outputs: Record<string, { imports: Array<{ path: string, kind: string, external?: boolean }>, inputs: Record<string, unknown> }> }
async function cliBundle (): Promise<{ dir: string, meta: Meta }> {
  await promisify(execFile)('bash', [join(root, 'scripts/cli-bundle.sh')], { cwd: root })
  const dir = realpathSync(join(root, 'dist/cli'))
  return { dir, meta: JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta }
}

/** The sources held by `chunks` (absolute paths of output files), repository-relative. */
function sourcesOf (meta: Meta, chunks: Iterable<string>): Set<string> {
  const byFile = new Map(Object.entries(meta.outputs).map(([k, v]) => [resolve(root, k), v]))
  return new Set([...chunks].flatMap(c => Object.keys(byFile.get(c)?.inputs ?? {})))
}

t.test('the bundle\'s entry chunk imports neither the AWS SDK nor the controller: they are lazy chunks', async t => {
  const { dir, meta } = await cliBundle()
  const out = (f: string): string => relative(root, join(dir, f))
  const entry = meta.outputs[out('main.js')]
  if (entry === undefined) throw new Error(`no ${out('main.js')} in the metafile`)
  // What loading main.js loads: the chunks it imports statically, transitively (not import()).
  const chunks = new Set<string>()
  const packages = new Set<string>()
  const todo = [out('main.js')]
  for (let c = todo.pop(); c !== undefined; c = todo.pop()) {
    if (chunks.has(c)) continue
    chunks.add(c)
    for (const i of meta.outputs[c]?.imports ?? []) {
      if (i.kind !== 'import-statement') continue
      if (i.external === true) packages.add(i.path); else todo.push(i.path)
    }
  }
  const atStart = sourcesOf(meta, [...chunks].map(c => resolve(root, c)))
  const all = sourcesOf(meta, Object.keys(meta.outputs).map(c => resolve(root, c)))
  t.ok(atStart.has('blanket-manager/cli/main.ts'), 'the entry chunk holds the CLI')
  t.ok(all.has('blanket-manager/controller/controller.ts') && all.has('drivers/ec2/driver.ts'), 'the bundle holds the controller and the EC2 driver')
  t.notOk(atStart.has('blanket-manager/controller/controller.ts'), 'not loaded at start: the controller')
  t.notOk(atStart.has('drivers/ec2/driver.ts'), 'nor the EC2 driver')
  t.same([...packages].filter(p => p.startsWith('@aws-sdk') || p === 'ssh2' || p === 'ajv' || p === 'yaml'), [], 'nor the AWS SDK, ssh2 or the spec\'s parsers')
  t.same([...atStart].filter(forbidden), [])
})

t.test('running the bundled CLI loads the controller only for a command that needs it, and never the AWS SDK for a local spec', async t => {
  const { dir: bundle, meta } = await cliBundle()
  const { log, register, dir } = loadRecorder(t)
  await promisify(execFile)(process.execPath, ['--import', register, join(bundle, 'main.js'), '-f', join(root, 'examples/local.yaml'), 'plan'],
    { cwd: root, env: { ...process.env, SUPERCLOUD_STATE_DIR: join(dir, 'state') } })
  const urls = readFileSync(log, 'utf8').split('\n').filter(u => u !== '')
  const loaded = sourcesOf(meta, urls.map(u => fileURLToPath(u)))
  t.ok(loaded.has('blanket-manager/controller/controller.ts'), 'the controller was loaded')
  t.notOk(urls.some(u => u.includes('@aws-sdk')), 'the AWS SDK was not loaded')
  t.notOk(loaded.has('drivers/ec2/driver.ts'), 'nor the EC2 driver')
  t.same([...loaded].filter(forbidden), [], 'no NBD server, swap service or repository module was loaded')
})
