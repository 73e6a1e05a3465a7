/** Bundles the host agent into one ES module file that the bootstrap uploads to hosts. */
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdir, writeFile, rename } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cacheRoot } from '../state/paths.ts'

export interface AgentBundle {
  /** Local path of the bundled agent. */
  path: string
  /** Content hash: the agent's build id. */
  hash: string
  code: string
}

let cached: Promise<AgentBundle> | undefined

export async function agentBundle (): Promise<AgentBundle> {
  cached ??= (async () => {
    const entry = resolve(dirname(fileURLToPath(import.meta.url)), 'main.ts')
    const out = await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node18',
      write: false,
      logLevel: 'silent',
      banner: { js: "import { createRequire as __scCreateRequire } from 'node:module'; const require = __scCreateRequire(import.meta.url);" }
    })
    const code = out.outputFiles[0]?.text ?? ''
    const hash = createHash('sha256').update(code).digest('hex').slice(0, 12)
    const path = join(cacheRoot(), 'agent', `agent-${hash}.mjs`)
    await mkdir(dirname(path), { recursive: true })
    const tmp = `${path}.${process.pid}`
    await writeFile(tmp, code)
    await rename(tmp, path)
    return { path, hash, code }
  })()
  return await cached
}
