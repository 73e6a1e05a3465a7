/**
 * Builds the tiny guest image (or finds it in the cache) and prints its paths as JSON:
 *   node --import tsx images/guest/build-cli.ts [--cache-dir DIR] [--force] [--quiet]
 */
import { buildTinyImage } from './build.ts'
import { runBuildCli } from '../lib/build-cli.ts'

await runBuildCli('node --import tsx images/guest/build-cli.ts', buildTinyImage)
