/**
 * The migration's TLS credentials in a running QEMU (touches files and QMP): the key file under
 * the guest's run dir (0700 directory, 0600 files) and the `tls-creds-psk` object made from it.
 * What they are is decided in migration-tls.ts.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MigrationSecurity } from '../../core/migration.ts'
import type { QmpClient } from './qmp.ts'
import { credsObject, FFDHE2048_PEM, pskKeyFile, TLS_CREDS_ID, TLS_DIR } from './migration-tls.ts'

/**
 * Creates the credentials object for `endpoint` (after removing any left by an earlier
 * migration). The server keeps its key file until dropCreds (GnuTLS reads it at each
 * handshake); the client's is deleted at once (QEMU read the key at object-add).
 */
export async function installCreds (q: QmpClient, runDir: string, endpoint: 'server' | 'client', sec: MigrationSecurity): Promise<void> {
  await dropCreds(q, runDir)
  if (sec === 'off') return
  const dir = join(runDir, TLS_DIR)
  await mkdir(dir, { mode: 0o700 })
  try {
    await writeFile(join(dir, 'keys.psk'), pskKeyFile(sec), { mode: 0o600, flag: 'wx' })
    if (endpoint === 'server') await writeFile(join(dir, 'dh-params.pem'), FFDHE2048_PEM, { mode: 0o600, flag: 'wx' })
    await q.execute('object-add', credsObject(endpoint, dir, sec))
  } finally {
    if (endpoint === 'client') await rm(dir, { recursive: true, force: true })
  }
}

/** Clear-text parameters again, the credentials object and the key file gone (each step best effort). */
export async function dropCreds (q: QmpClient, runDir: string): Promise<void> {
  await q.execute('migrate-set-parameters', { 'tls-creds': '' }).catch(() => {})
  await q.execute('object-del', { id: TLS_CREDS_ID }).catch(() => {})
  await rm(join(runDir, TLS_DIR), { recursive: true, force: true })
}
