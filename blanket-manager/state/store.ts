/**
 * A supercloud's state: the interface (types.ts) and which store holds it. The embedded SQLite
 * store (sqlite-store.ts) is the default; a PostgreSQL URL (`state:` in the spec, or
 * SUPERCLOUD_STATE) selects the shared store (pg/store.ts). `StateStore.open(dir)` opens the
 * SQLite one, as before.
 */
import { PgStateStore } from './pg/store.ts'
import { SqliteStateStore } from './sqlite-store.ts'
import type { StateStore as Store } from './types.ts'

export type * from './types.ts'
export type StateStore = Store

/** Opens stores. */
export const StateStore = {
  /** The SQLite store in `dir` (created when missing). */
  open: (dir: string): Store => SqliteStateStore.open(dir)
}

/** Where a supercloud's state is chosen: the spec's `state:` first, then SUPERCLOUD_STATE; none = the SQLite file. */
export function stateUrl (specState: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (specState !== undefined && specState !== '') return specState
  const e = env.SUPERCLOUD_STATE
  return e !== undefined && e !== '' ? e : undefined
}

/**
 * Opens the state of supercloud `name`: PostgreSQL at `url` when given (its local files stay in
 * `dir`), else the SQLite file in `dir`. Applies pending schema migrations; throws the typed
 * errors of errors.ts (bad URL, login refused, unreachable, newer schema).
 */
export function openStateStore (name: string, dir: string, url?: string): Store {
  return url === undefined ? SqliteStateStore.open(dir) : PgStateStore.open(name, dir, url)
}

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
