/**
 * The command line shared by the image recipes' build-cli.ts: build the image (or find it in
 * the cache) and print its paths as JSON; progress on stderr; Ctrl-C cancels.
 *   [--cache-dir DIR] [--force] [--quiet]
 */
import { SupercloudError } from '../../core/errors.ts'
import type { ImageBuildOptions } from './image-cache.ts'

export async function runBuildCli (usage: string, build: (opts: ImageBuildOptions) => Promise<unknown>): Promise<void> {
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
      process.stdout.write(`usage: ${usage} [--cache-dir DIR] [--force] [--quiet]\n`)
      process.exit(0)
    } else {
      process.stderr.write(`unknown argument ${a}\n`)
      process.exit(2)
    }
  }
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort())
  try {
    const img = await build({
      ...(cacheDir !== undefined ? { cacheDir } : {}),
      force,
      signal: ac.signal,
      ...(quiet ? {} : { onProgress: ev => process.stderr.write(`[${ev.phase}] ${ev.message}\n`) })
    })
    process.stdout.write(JSON.stringify(img, null, 2) + '\n')
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(err instanceof SupercloudError ? err.exitCode : 1)
  }
}
