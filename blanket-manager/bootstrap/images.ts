/** Puts guest image files on a host (content-addressed under <blanket dir>/images/<id>/), once. */
import { readFile } from 'node:fs/promises'
import { shq, type SshConnection } from '../../core/ssh.ts'
import type { OperationOptions } from '../../core/progress.ts'

/**
 * Uploads `files` (name on host -> local path) to `<dir>/images/<id>/` unless all are there.
 * Returns the host paths by name.
 */
export async function ensureImageOnHost (ssh: SshConnection, dir: string, id: string, files: Record<string, string>, opts: OperationOptions = {}): Promise<Record<string, string>> {
  const remote = `${dir}/images/${id}`
  const out: Record<string, string> = {}
  for (const name of Object.keys(files)) out[name] = `${remote}/${name}`
  const test = Object.values(out).map(p => `test -s ${shq(p)}`).join(' && ')
  const have = (await ssh.exec(`${test} && echo yes`, { allowFailure: true })).stdout.trim() === 'yes'
  if (!have) {
    opts.onProgress?.({ subject: `host ${ssh.hostName}`, phase: 'image', message: `uploading image ${id}` })
    await ssh.exec(`mkdir -p ${shq(remote)}`)
    for (const [name, local] of Object.entries(files)) await ssh.writeFile(`${remote}/${name}`, await readFile(local))
  }
  return out
}
