/**
 * Builds the Xen host image (or finds it in the cache) and prints its paths as JSON:
 *   node --import tsx images/xen-host/build-cli.ts [--cache-dir DIR] [--force] [--quiet]
 */
import { buildXenHostImage } from './build.ts'
import { runBuildCli } from '../lib/build-cli.ts'

await runBuildCli('node --import tsx images/xen-host/build-cli.ts', buildXenHostImage)
