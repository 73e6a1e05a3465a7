/** core/root.ts: the project root, found from the module's own location by the package.json's name. */
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { findProjectRoot, projectPath, projectRoot } from '../../../core/root.ts'
import { ROOT } from '../../helpers/sources.ts'

t.test('from the sources, the root is the checkout', async t => {
  t.equal(projectRoot(), ROOT)
  t.equal(projectPath('drivers', 'ec2', 'prices.json'), join(ROOT, 'drivers', 'ec2', 'prices.json'))
})

t.test('the nearest directory whose package.json has the name; none outside a checkout', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sc-root-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  mkdirSync(join(dir, 'dist', 'cli', 'nested'), { recursive: true })
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'supercloud' }))
  writeFileSync(join(dir, 'dist', 'package.json'), JSON.stringify({ name: 'something-else' }))
  writeFileSync(join(dir, 'dist', 'cli', 'package.json'), '{ not json')
  t.equal(findProjectRoot(join(dir, 'dist', 'cli', 'nested')), dir, 'other and broken package.json files are passed')
  t.equal(findProjectRoot(join(dir, 'dist')), dir)
  t.equal(findProjectRoot(join(dir, 'dist'), 'something-else'), join(dir, 'dist'))
  t.equal(findProjectRoot(tmpdir()), undefined)
})
