/**
 * Runs the fake EC2 server on its own (for e2e tests of `supercloud up` with an ec2 site):
 *   node --import tsx drivers/ec2/fake-server/main.ts --prefix sct1a2b --dir /tmp/x
 * Prints one line `{"endpoint": "...", "accessKeyId": "...", "secretAccessKey": "...", "ami": "...", "checkIpUrl": "...",
 * "sshNetns": "...", "uplink": "...", "publicAddress": "..."}` when ready (sshNetns: SUPERCLOUD_EC2_SSH_NETNS;
 * uplink: SUPERCLOUD_LOCAL_UPLINK for one supercloud's local sites; docs/ec2.md);
 * on SIGTERM/SIGINT terminates its instances, removes its namespaces and exits.
 */
import { parseArgs } from 'node:util'
import { FakeEc2Server, FAKE_ACCESS_KEY_ID, FAKE_AMI, FAKE_SECRET_ACCESS_KEY } from './server.ts'

const { values } = parseArgs({ options: { prefix: { type: 'string' }, dir: { type: 'string' } } })
if (values.prefix === undefined || values.dir === undefined || !/^[a-z][a-z0-9]{0,7}$/.test(values.prefix)) {
  process.stderr.write('usage: main.ts --prefix <1-8 of [a-z0-9]> --dir <work dir>\n')
  process.exit(2)
}
const server = new FakeEc2Server({ prefix: values.prefix, dir: values.dir })
let stopping = false
const stop = async (): Promise<void> => {
  if (stopping) return
  stopping = true
  await server.stop().catch(err => { process.stderr.write(`fake EC2 server: stop: ${String(err)}\n`) })
  process.exit(0)
}
process.on('SIGTERM', () => { void stop() })
process.on('SIGINT', () => { void stop() })
const endpoint = await server.start()
process.stdout.write(JSON.stringify({ endpoint, accessKeyId: FAKE_ACCESS_KEY_ID, secretAccessKey: FAKE_SECRET_ACCESS_KEY, ami: FAKE_AMI, checkIpUrl: `${endpoint}/checkip`, sshNetns: server.sshNetns, uplink: server.uplink(0), publicAddress: server.publicAddress }) + '\n')
