/** The supercloud's SSH key pair (controller side). */
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './sh.ts'

/** Creates `${dir}/id_ed25519` (+ .pub) once, without passphrase; returns the private key path. */
export async function ensureSupercloudKey (dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const path = join(dir, 'id_ed25519')
  const have = await Promise.all([stat(path), stat(`${path}.pub`)]).then(() => true, () => false)
  if (!have) {
    await run(['rm', '-f', path, `${path}.pub`])
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'supercloud', '-f', path])
  }
  return path
}
