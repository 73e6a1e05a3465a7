/**
 * The fake EC2 server's HTTP side: /checkip, and the Query API: SigV4 authentication, the
 * tests' throttling, dispatch of each action to its module, EC2's XML answers and errors.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  EC2_API_VERSION, Ec2ApiError, errorXml, expectedSignature, parseAuthorization, parseQuery, responseXml, str, type QueryObject, type XmlNode
} from './protocol.ts'
import type { FakeEc2State } from './state.ts'
import { syncGateway } from './gateway.ts'
import { describeImages, describeSubnets } from './images.ts'
import { deleteKeyPair, describeKeyPairs, importKeyPair } from './key-pairs.ts'
import { changeIngress, createSecurityGroup, deleteSecurityGroup, describeSecurityGroups } from './security-groups.ts'
import { describeSpotPriceHistory, interrupt, recommendRebalance } from './spot.ts'
import { createTags, getConsoleOutput, describeInstances, runInstances, terminateInstances } from './instances.ts'

export async function handle (s: FakeEc2State, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const chunks: Buffer[] = []
  for await (const c of req) chunks.push(c as Buffer)
  const body = Buffer.concat(chunks)
  const url = new URL(req.url ?? '/', 'http://localhost')
  if (req.method === 'GET' && url.pathname === '/checkip') {
    // Like checkip.amazonaws.com: the caller's address as seen from the internet.
    res.writeHead(200, { 'content-type': 'text/plain' })
    // This machine is behind its edge router: its public address is the edge's.
    res.end(`${s.net.publicAddress}\n`)
    return
  }
  if (req.method === 'POST' && url.pathname.startsWith('/control/')) { control(s, url, res); return }
  const requestId = randomUUID()
  const q = parseQuery(body.toString('utf8'))
  const action = str(q.Action) ?? ''
  let region = ''
  const send = (status: number, xml: string, code?: string): void => {
    s.requests.push(code !== undefined ? { action, region, status, code } : { action, region, status })
    res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId })
    res.end(xml)
  }
  try {
    if (req.method !== 'POST') throw new Ec2ApiError('InvalidAction', `The action ${req.method ?? ''} ${url.pathname} is not valid for this web service.`)
    region = authenticate(s, req, url, body)
    if (str(q.Version) !== EC2_API_VERSION) throw new Ec2ApiError('InvalidParameterValue', `Unsupported API version '${str(q.Version) ?? ''}'`)
    const throttle = s.throttles.find(t => t.remaining > 0 && (t.action === undefined || t.action === action))
    if (throttle !== undefined) {
      throttle.remaining--
      throw new Ec2ApiError('RequestLimitExceeded', 'Request limit exceeded.', 503)
    }
    const out = await dispatch(s, action, region, q)
    send(200, responseXml(action, requestId, out))
  } catch (err) {
    if (err instanceof Ec2ApiError) {
      send(err.status, errorXml(err.code, err.message, requestId), err.code)
    } else {
      send(500, errorXml('InternalError', 'An internal error has occurred.', requestId), 'InternalError')
      process.emitWarning(`fake EC2 server: ${action}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
    }
  }
}

/** Checks the SigV4 Authorization header; returns the region of its credential scope. */
function authenticate (s: FakeEc2State, req: IncomingMessage, url: URL, body: Buffer): string {
  const header = req.headers.authorization
  if (header === undefined) throw new Ec2ApiError('MissingAuthenticationToken', 'Request is missing Authentication Token', 403)
  const auth = parseAuthorization(header)
  if (auth === undefined) throw new Ec2ApiError('IncompleteSignature', 'The request signature does not conform to AWS standards.', 400)
  const secret = s.credentials[auth.accessKeyId]
  if (secret === undefined) throw new Ec2ApiError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401)
  if (s.opts.verifySignatures !== false) {
    const expected = expectedSignature({ method: req.method ?? 'POST', path: url.pathname, query: url.search.slice(1), headers: req.headers, body, auth, secretAccessKey: secret })
    if (expected !== auth.signature) throw new Ec2ApiError('AuthFailure', 'AWS was not able to validate the provided access credentials', 401)
  }
  if (auth.service !== 'ec2') throw new Ec2ApiError('AuthFailure', `credential scope names service '${auth.service}', not ec2`, 401)
  if (s.regions[auth.region] === undefined) throw new Ec2ApiError('AuthFailure', `AWS was not able to validate the provided access credentials (region ${auth.region} is not enabled for this account)`, 401)
  return auth.region
}

async function dispatch (s: FakeEc2State, action: string, region: string, q: QueryObject): Promise<Array<XmlNode | undefined>> {
  switch (action) {
    case 'DescribeImages': return describeImages(s, region, q)
    case 'DescribeSubnets': return describeSubnets(s, region, q)
    case 'ImportKeyPair': return importKeyPair(s, region, q)
    case 'DescribeKeyPairs': return describeKeyPairs(s, region, q)
    case 'DeleteKeyPair': return deleteKeyPair(s, region, q)
    case 'CreateSecurityGroup': return createSecurityGroup(s, region, q)
    case 'DescribeSecurityGroups': return describeSecurityGroups(s, region, q)
    case 'AuthorizeSecurityGroupIngress': { const out = changeIngress(s, region, q, 'authorize'); await syncGateway(s); return out }
    case 'RevokeSecurityGroupIngress': { const out = changeIngress(s, region, q, 'revoke'); await syncGateway(s); return out }
    case 'DeleteSecurityGroup': return deleteSecurityGroup(s, region, q)
    case 'RunInstances': return runInstances(s, region, q)
    case 'DescribeInstances': return describeInstances(s, region, q)
    case 'TerminateInstances': return await terminateInstances(s, region, q)
    case 'CreateTags': return createTags(s, region, q)
    case 'GetConsoleOutput': return getConsoleOutput(s, region, q)
    case 'DescribeSpotPriceHistory': return describeSpotPriceHistory(s, region, q)
    default: throw new Ec2ApiError('InvalidAction', `The action ${action} is not valid for this web service.`)
  }
}

/**
 * The control calls of a standalone server (main.ts), for e2e tests driving it from another
 * process: `POST /control/interrupt?instance=ID&notice=SECONDS` (answers the termination
 * time) and `POST /control/rebalance?instance=ID`. Loopback only, like the whole server.
 */
function control (s: FakeEc2State, url: URL, res: ServerResponse): void {
  const id = url.searchParams.get('instance') ?? ''
  try {
    let out = ''
    if (url.pathname === '/control/interrupt') out = interrupt(s, id, Number(url.searchParams.get('notice') ?? '120'))
    else if (url.pathname === '/control/rebalance') recommendRebalance(s, id)
    else { res.writeHead(404); res.end(); return }
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`${out}\n`)
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/plain' })
    res.end(`${(err as Error).message}\n`)
  }
}
