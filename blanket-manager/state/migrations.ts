/**
 * The state schema, as versioned migrations applied when a store is opened. Version N's SQL
 * turns a version N-1 store into a version N one; each store records its version (SQLite in
 * PRAGMA user_version, PostgreSQL in a schema_version table) and applies what it lacks. A store
 * of a newer version than the last one here is refused (StateSchemaError) before anything changes.
 *
 * Version 1 is the schema every SQLite state file had before versions were recorded (its
 * statements are CREATE ... IF NOT EXISTS, so an unversioned file is taken up unchanged), plus
 * the event history (created on first use before) and, on PostgreSQL, the lock holders and the
 * fencing numbers (pg/locks.ts).
 */
import { StateSchemaError } from './errors.ts'

export interface Migration {
  version: number
  sqlite: string
  postgres: string
}

const TABLES = (serial: string): string => `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (driver TEXT PRIMARY KEY, spec_hash TEXT NOT NULL, status TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
  name TEXT PRIMARY KEY, site TEXT NOT NULL, driver TEXT NOT NULL, spec_hash TEXT NOT NULL,
  status TEXT NOT NULL, record TEXT, accel TEXT, accel_reason TEXT, bootstrapped INTEGER NOT NULL DEFAULT 0, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vms (
  name TEXT PRIMARY KEY, host TEXT NOT NULL, spec_hash TEXT NOT NULL, status TEXT NOT NULL,
  record TEXT, error TEXT, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS operations (id TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT, who TEXT NOT NULL, pid INTEGER NOT NULL, started TEXT NOT NULL, ended TEXT, status TEXT NOT NULL, cancel_by TEXT);
CREATE TABLE IF NOT EXISTS host_keys (host TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, public_key TEXT NOT NULL, pinned TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq ${serial}, ts TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq ${serial}, ts TEXT NOT NULL, type TEXT NOT NULL, host TEXT, vm TEXT, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_vm ON events (vm, seq);
`

const OPERATORS = 'CREATE TABLE IF NOT EXISTS operators (name TEXT PRIMARY KEY, public_key TEXT NOT NULL, added TEXT NOT NULL, added_by TEXT NOT NULL);'

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sqlite: TABLES('INTEGER PRIMARY KEY AUTOINCREMENT'),
    postgres: TABLES('BIGSERIAL PRIMARY KEY') + `
CREATE TABLE IF NOT EXISTS lock_holders (name TEXT PRIMARY KEY, lock_key BIGINT NOT NULL, backend INTEGER NOT NULL, pid INTEGER NOT NULL, who TEXT NOT NULL, since TEXT NOT NULL, purpose TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lock_fences (name TEXT PRIMARY KEY, n BIGINT NOT NULL, written TEXT);
`
  },
  {
    // Operators granted login to the hosts (`supercloud access grant`): public keys only.
    version: 2,
    sqlite: OPERATORS,
    postgres: OPERATORS
  }
]

/** The newest schema version this supercloud knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0

/** The migrations a store at version `current` needs, oldest first; StateSchemaError when it is newer than known. */
export function pendingMigrations (current: number, where: string, list: readonly Migration[] = MIGRATIONS): Migration[] {
  const known = list[list.length - 1]?.version ?? 0
  if (current > known) throw new StateSchemaError(where, current, known)
  return list.filter(m => m.version > current)
}
