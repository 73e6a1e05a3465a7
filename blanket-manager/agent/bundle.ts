/** Bundles the host agent into one ES module file that the bootstrap uploads to hosts. */
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdir, writeFile, rename } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { projectRoot } from '../../core/root.ts'
import { cacheRoot } from '../state/paths.ts'

export interface AgentBundle {
  /** Local path of the bundled agent. */
  path: string
  /** Content hash: the agent's build id. */
  hash: string
  code: string
}

const cache = new Map<string, Promise<AgentBundle>>()

/** Bundles `entry` (relative to the repository root) into one ES module, cached by content hash. */
export async function bundleEntry (name: string, entry: string, external: string[] = []): Promise<AgentBundle> {
  let p = cache.get(name)
  if (p === undefined) {
    p = (async () => {
      const out = await build({
        entryPoints: [resolve(repoRoot, entry)],
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node18',
        write: false,
        logLevel: 'silent',
        external,
        banner: { js: "import { createRequire as __scCreateRequire } from 'node:module'; const require = __scCreateRequire(import.meta.url);" }
      })
      const code = out.outputFiles[0]?.text ?? ''
      const hash = createHash('sha256').update(code).digest('hex').slice(0, 12)
      const path = join(cacheRoot(), 'agent', `${name}-${hash}.mjs`)
      await mkdir(dirname(path), { recursive: true })
      const tmp = `${path}.${process.pid}`
      await writeFile(tmp, code)
      await rename(tmp, path)
      return { path, hash, code }
    })()
    cache.set(name, p)
  }
  return await p
}

const repoRoot = projectRoot()

/** The host agent, one file. */
export async function agentBundle (): Promise<AgentBundle> {
  return await bundleEntry('agent', 'blanket-manager/agent/main.ts')
}

/** The VirtualWire endpoint manager daemon; fuse-native (a native addon) ships beside it. */
export async function endpointDaemonBundle (): Promise<AgentBundle> {
  return await bundleEntry('vw-endpointd', 'virtualwire/endpoint/daemon.ts', ['fuse-native'])
}

/** npm packages the endpoint daemon loads at run time (fuse-native and what it requires). */
export const ENDPOINT_DAEMON_MODULES = ['fuse-native', 'fuse-shared-library', 'fuse-shared-library-linux', 'nanoresource', 'inherits', 'napi-macros', 'node-gyp-build']

/** Absolute path of the repository's node_modules. */
export const NODE_MODULES = join(repoRoot, 'node_modules')
