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

/**
 * Whether `endpoints` (read back from the host) show `w` done: the endpoint created with that
 * configuration, re-pointed to that address, or gone (pure).
 */
export function writeTookEffect (w: EndpointWrite, endpoints: EndpointConfig[]): boolean {
  const first = w.line.trim().split(/\s+/)[0]
  if (w.file === 'destroy') return !endpoints.some(e => e.id === Number(first))
  if (w.file === 'create') {
    const [want] = parseEndpointLines(w.line)
    const e = endpoints.find(x => x.id === want?.id)
    return want !== undefined && e !== undefined && sameAddress(want.local, e.local) && sameAddress(want.remote, e.remote)
  }
  const e = endpoints.find(x => x.id === Number(w.file))
  const to = first !== undefined ? parseEndpointAddress(first) : undefined
  return e !== undefined && to !== undefined && sameAddress(e.remote, to)
}

function sameAddress (a: EndpointConfig['local'], b: EndpointConfig['local']): boolean {
  return a.ip === b.ip && a.port === b.port
}

/** How long one write may wait for the endpoint manager (its kernel changes) before it is called failed. */
const WRITE_TIMEOUT_MS = 5 * 60_000

/**
 * Writes one line to the host's endpoint interface. A refused write throws EndpointRefusedError
 * with the manager's reason. When the shell saw a failure or no exit status at all (a loaded
 * emulated dom0's sshd sometimes ends a session without it), the endpoints are read back first:
 * a change that was made counts as done; a write with no exit status and no change is written
 * once more.
 */
export async function writeEndpoint (ssh: SshConnection, root: string, w: EndpointWrite): Promise<void> {
  const write = async (): Promise<{ code: number | null, stderr: string }> =>
    await ssh.exec(`printf '%s\\n' ${shq(w.line)} > ${shq(`${root}/${w.file}`)}`, { allowFailure: true, timeoutMs: WRITE_TIMEOUT_MS })
  let r = await write()
  if (r.code === 0) return
  if (writeTookEffect(w, await readEndpoints(ssh, root))) return
  if (r.code === null) {
    r = await write()
    if (r.code === 0) return
  }
  const reason = (await ssh.exec(`cat ${shq(`${root}/last_error`)}`, { allowFailure: true })).stdout.trim()
  const detail = reason !== '' ? reason : r.stderr.trim() !== '' ? r.stderr.trim() : r.code === null ? 'the SSH session ended without the write\'s exit status, twice' : `exit status ${r.code}, no reason given`
  throw new EndpointRefusedError(w.host, w, detail)
}
