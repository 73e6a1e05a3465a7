/**
 * The controller's side of VirtualWire: reads each host's endpoints through its endpoint
 * interface and writes the changes the topology compiler asks for — over SSH, with nothing
 * but `cat` and `echo` on the files of the seed's Figure 5.9.
 */
import type { EndpointConfig } from '../../virtualwire/types.ts'
import { parseEndpointAddress, type EndpointWrite } from '../../virtualwire/topology/compile.ts'
import { SupercloudError } from '../../core/errors.ts'
import { shq, type SshConnection } from '../../core/ssh.ts'

/** A write the endpoint manager refused; carries its reason (from `last_error`). */
export class EndpointRefusedError extends SupercloudError {
  constructor (host: string, write: EndpointWrite, reason: string) {
    super('SC_VW_WRITE_REFUSED', `host ${host}: endpoint interface refused \`${write.line}\` > ${write.file}: ${reason}`)
  }
}

/** Parses the lines of `cat <root>/<N>` (one endpoint per line). Unparseable lines are skipped. */
export function parseEndpointLines (text: string): EndpointConfig[] {
  const out: EndpointConfig[] = []
  for (const line of text.split('\n')) {
    const [id, a, b] = line.trim().split(/\s+/)
    const local = a !== undefined ? parseEndpointAddress(a) : undefined
    const remote = b !== undefined ? parseEndpointAddress(b) : undefined
    const n = Number(id)
    if (Number.isInteger(n) && n > 0 && local !== undefined && remote !== undefined) out.push({ id: n, local, remote })
  }
  return out.sort((x, y) => x.id - y.id)
}

export async function readEndpoints (ssh: SshConnection, root: string): Promise<EndpointConfig[]> {
  const r = await ssh.exec(`cd ${shq(root)} && for f in *; do case "$f" in *[!0-9]*) ;; *) cat "$f";; esac; done`, { allowFailure: true })
  return parseEndpointLines(r.stdout)
}

export async function writeEndpoint (ssh: SshConnection, root: string, w: EndpointWrite): Promise<void> {
  const r = await ssh.exec(`printf '%s\\n' ${shq(w.line)} > ${shq(`${root}/${w.file}`)}`, { allowFailure: true })
  if (r.code !== 0) {
    const reason = (await ssh.exec(`cat ${shq(`${root}/last_error`)}`, { allowFailure: true })).stdout.trim()
    throw new EndpointRefusedError(w.host, w, reason !== '' ? reason : r.stderr.trim())
  }
}
