/** Where the controller keeps each supercloud's files on the operator's machine. */
import { homedir } from 'node:os'
import { join } from 'node:path'

/** Root of all superclouds' state: $SUPERCLOUD_STATE_DIR, else $XDG_STATE_HOME/supercloud, else ~/.local/state/supercloud. */
export function stateRoot (env: NodeJS.ProcessEnv = process.env): string {
  if (env.SUPERCLOUD_STATE_DIR !== undefined && env.SUPERCLOUD_STATE_DIR !== '') return env.SUPERCLOUD_STATE_DIR
  const xdg = env.XDG_STATE_HOME !== undefined && env.XDG_STATE_HOME !== '' ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state')
  return join(xdg, 'supercloud')
}

/** Directory of one supercloud: state.db, SSH key, driver files. */
export function supercloudDir (name: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(stateRoot(env), name)
}

/** Cache for built images and the agent bundle: $SUPERCLOUD_CACHE, else ~/.cache/supercloud. */
export function cacheRoot (env: NodeJS.ProcessEnv = process.env): string {
  if (env.SUPERCLOUD_CACHE !== undefined && env.SUPERCLOUD_CACHE !== '') return env.SUPERCLOUD_CACHE
  return join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'supercloud')
}
