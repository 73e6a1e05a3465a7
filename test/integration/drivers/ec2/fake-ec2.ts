/** Fixtures of the ec2 driver tests: the fake EC2 server, AWS environment, contexts and host specs. */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { FakeEc2Server, FAKE_ACCESS_KEY_ID, FAKE_AMI, FAKE_SECRET_ACCESS_KEY } from '../../../../drivers/ec2/fake-server/server.ts'
import type { HostSpec } from '../../../../core/spec.ts'
import { registerPrefix, sweepPrefix } from '../../../helpers/sweep-lib.ts'

/**
 * Credentials for the default AWS chain of this test process only: the fake server's static
 * key in the environment; no profile files, no instance metadata (nothing leaves loopback).
 */
export function useFakeAwsEnvironment (): void {
  process.env.AWS_ACCESS_KEY_ID = FAKE_ACCESS_KEY_ID
  process.env.AWS_SECRET_ACCESS_KEY = FAKE_SECRET_ACCESS_KEY
  delete process.env.AWS_SESSION_TOKEN
  delete process.env.AWS_PROFILE
  process.env.AWS_CONFIG_FILE = '/nonexistent/supercloud-test/aws-config'
  process.env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/supercloud-test/aws-credentials'
  process.env.AWS_EC2_METADATA_DISABLED = 'true'
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'
  delete process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
  delete process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI
  delete process.env.AWS_WEB_IDENTITY_TOKEN_FILE
}

/** Starts a fake EC2 server (own prefix, swept at teardown). */
export async function startFakeEc2 (t: Test): Promise<FakeEc2Server> {
  const prefix = `sct${randomBytes(2).toString('hex')}`
  registerPrefix(prefix)
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-ec2-`))
  const server = new FakeEc2Server({ prefix, dir })
  t.teardown(async () => {
    await server.stop().catch(() => {})
    sweepPrefix(prefix)
    await rm(dir, { recursive: true, force: true })
  })
  await server.start()
  return server
}

export function ec2Host (name: string, site: string, opts: Partial<NonNullable<HostSpec['ec2']>> = {}): HostSpec {
  return {
    name,
    site,
    driver: 'ec2',
    cpus: 1,
    memoryBytes: 256 * 1024 * 1024,
    hypervisor: { backend: 'qemu', accel: 'tcg' },
    ec2: { region: 'us-east-1', ami: FAKE_AMI, instanceType: 't3.micro', ...opts }
  }
}
