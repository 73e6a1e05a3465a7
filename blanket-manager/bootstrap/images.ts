/** Puts guest image files on a host (content-addressed under <blanket dir>/images/<id>/), once. */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { shq, type SshConnection } from '../../core/ssh.ts'
import type { OperationOptions } from '../../core/progress.ts'

/**
 * Uploads `files` (name on host -> local path) to `<dir>/images/<id>/`, each unless it is there.
 * A name ending in `.gz` is sent as it is and unpacked there (gzip, which every Linux host
 * has) under the name without `.gz`: it is returned under that name. Every file lands under a
 * temporary name and is renamed into place, so a file being uploaded or unpacked (by this call
 * or a concurrent one) is never taken for whole. Returns the host paths by name.
 */
export async function ensureImageOnHost (ssh: SshConnection, dir: string, id: string, files: Record<string, string>, opts: OperationOptions = {}): Promise<Record<string, string>> {
  const remote = `${dir}/images/${id}`
  const out: Record<string, string> = {}
  for (const name of Object.keys(files)) out[unpackedName(name)] = `${remote}/${unpackedName(name)}`
  const probe = Object.entries(out).map(([name, p]) => `if test -s ${shq(p)}; then echo ${shq(name)}; fi`).join('; ')
  const present = new Set((await ssh.exec(probe, { allowFailure: true })).stdout.split('\n').map(l => l.trim()))
  const missing = Object.entries(files).filter(([name]) => !present.has(unpackedName(name)))
  if (missing.length > 0) {
    opts.onProgress?.({ subject: `host ${ssh.hostName}`, phase: 'image', message: `uploading image ${id}` })
    await ssh.exec(`mkdir -p ${shq(remote)}`)
    for (const [name, local] of missing) {
      const tmp = `${remote}/.${name}.${randomBytes(6).toString('hex')}`
      const to = `${remote}/${unpackedName(name)}`
      await ssh.writeFile(tmp, await readFile(local))
      await ssh.exec(name === unpackedName(name)
        ? `mv -f ${shq(tmp)} ${shq(to)}`
        : `gzip -dc < ${shq(tmp)} > ${shq(`${tmp}.out`)} && mv -f ${shq(`${tmp}.out`)} ${shq(to)}; s=$?; rm -f ${shq(tmp)} ${shq(`${tmp}.out`)}; exit $s`)
    }
  }
  return out
}

function unpackedName (name: string): string {
  return name.endsWith('.gz') ? name.slice(0, -'.gz'.length) : name
}
