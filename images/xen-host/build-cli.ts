/**
 * Builds the Xen host image (or finds it in the cache) and prints its paths as JSON:
 *   node --import tsx images/xen-host/build-cli.ts [--cache-dir DIR] [--force] [--quiet]
 */
import { buildXenHostImage } from './build.ts'
import { SupercloudError } from '../../blanket-manager/errors.ts'

const args = process.argv.slice(2)
let cacheDir: string | undefined
let force = false
let quiet = false
for (let i = 0; i < args.length; i++) {
  const a = args[i]
  if (a === '--cache-dir') cacheDir = args[++i]
  else if (a === '--force') force = true
  else if (a === '--quiet' || a === '-q') quiet = true
  else if (a === '--help' || a === '-h') {
    process.stdout.write('usage: node --import tsx images/xen-host/build-cli.ts [--cache-dir DIR] [--force] [--quiet]\n')
    process.exit(0)
  } else {
    process.stderr.write(`unknown argument ${a}\n`)
    process.exit(2)
  }
}

const ac = new AbortController()
process.once('SIGINT', () => ac.abort())
try {
  const img = await buildXenHostImage({
    cacheDir,
    force,
    signal: ac.signal,
    onProgress: quiet ? undefined : ev => process.stderr.write(`[${ev.phase}] ${ev.message}\n`)
  })
  process.stdout.write(JSON.stringify(img, null, 2) + '\n')
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(err instanceof SupercloudError ? err.exitCode : 1)
}
