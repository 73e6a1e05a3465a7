/** The supercloud's SSH key pair (controller side). */
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { run } from './sh.ts'

/** Where the supercloud's private key of state directory `dir` is (public key beside it, `.pub`). */
export function supercloudKeyPath (dir: string): string {
  return join(dir, 'id_ed25519')
}

/** Creates `${dir}/id_ed25519` (+ .pub) once, without passphrase; returns the private key path. */
export async function ensureSupercloudKey (dir: string): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const path = supercloudKeyPath(dir)
  const have = await Promise.all([stat(path), stat(`${path}.pub`)]).then(() => true, () => false)
  if (!have) {
    await run(['rm', '-f', path, `${path}.pub`])
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'supercloud', '-f', path])
  }
  return path
}
