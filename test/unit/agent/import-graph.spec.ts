/**
 * The CLI (and the controller it loads) never loads the agent's NBD server or page repository:
 * only the host agent serves swap exports and repositories (blanket-manager/agent/overdriver-host.ts
 * loads them on first use). Checked twice: on the static import graph (imports that survive
 * compilation: not `import type`, not imports whose every name is a type) and by running the CLI
 * with a module hook that records every module Node loads.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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
})

t.test('running the CLI loads neither', async t => {
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
  // `plan` of the local example: the controller and the spec, no host touched (a private state dir).
  await promisify(execFile)(process.execPath, ['--import', 'tsx', '--import', join(dir, 'register.mjs'), join(root, 'blanket-manager/cli/main.ts'), '-f', join(root, 'examples/local.yaml'), 'plan'],
    { cwd: root, env: { ...process.env, SUPERCLOUD_STATE_DIR: join(dir, 'state') } })
  const loaded = new Set(readFileSync(log, 'utf8').split('\n').filter(u => u !== '').map(u => relative(root, fileURLToPath(u))))
  t.ok(loaded.has('blanket-manager/controller/controller.ts'), 'the controller was loaded')
  t.notOk([...loaded].some(m => m.includes('@aws-sdk')), 'the AWS SDK was not loaded (no EC2 host in the spec)')
  t.ok(loaded.has('blanket-manager/agent/overdriver-control.ts'), 'so was the controller\'s import of agent/overdriver-control.ts')
  t.same([...loaded].filter(forbidden), [], 'no NBD server, swap service or repository module was loaded')
})
