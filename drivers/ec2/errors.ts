/**
 * Typed errors of the ec2 driver and the mapping from AWS SDK errors (pure).
 * Codes are stable; docs/ec2.md lists them with what to do.
 */
import { SupercloudError } from '../../core/errors.ts'

export type Ec2ErrorCode =
  | 'SC_EC2_CREDENTIALS' | 'SC_EC2_PERMISSION' | 'SC_EC2_AMI_NOT_FOUND' | 'SC_EC2_QUOTA' | 'SC_EC2_CAPACITY'
  | 'SC_EC2_THROTTLED' | 'SC_EC2_UNREACHABLE' | 'SC_EC2_SPEC' | 'SC_EC2_SSH_FROM' | 'SC_EC2_INSTANCE' | 'SC_EC2_API' | 'SC_EC2_IMDS'

export class Ec2Error extends SupercloudError {
  /** The AWS error code behind it, when there is one (e.g. InstanceLimitExceeded). */
  readonly awsCode: string | undefined
  constructor (code: Ec2ErrorCode, message: string, opts: { cause?: unknown, awsCode?: string, exitCode?: number } = {}) {
    super(code, message, { cause: opts.cause, exitCode: opts.exitCode ?? (code === 'SC_EC2_SPEC' ? 2 : 1) })
    this.awsCode = opts.awsCode
  }
}

export const CREDENTIALS_HELP = 'configure the standard AWS credential chain: environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), ' +
  'a profile in ~/.aws/credentials or ~/.aws/config selected with AWS_PROFILE, `aws sso login --profile NAME` for IAM Identity Center, ' +
  'or an instance/container role; see docs/ec2.md'

const CREDENTIAL_CODES = new Set(['AuthFailure', 'InvalidClientTokenId', 'SignatureDoesNotMatch', 'MissingAuthenticationToken',
  'UnrecognizedClientException', 'ExpiredToken', 'ExpiredTokenException', 'IncompleteSignature', 'InvalidAccessKeyId', 'RequestExpired'])
const PERMISSION_CODES = new Set(['UnauthorizedOperation', 'OptInRequired', 'AccessDenied', 'AccessDeniedException', 'Blocked'])
const AMI_CODES = new Set(['InvalidAMIID.NotFound', 'InvalidAMIID.Malformed', 'InvalidAMIID.Unavailable'])
const QUOTA_CODES = new Set(['InstanceLimitExceeded', 'VcpuLimitExceeded', 'MaxSpotInstanceCountExceeded', 'ResourceLimitExceeded',
  'SecurityGroupLimitExceeded', 'RulesPerSecurityGroupLimitExceeded', 'KeyPairLimitExceeded', 'AddressLimitExceeded'])
const THROTTLE_CODES = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException'])
const CAPACITY_CODES = new Set(['InsufficientInstanceCapacity', 'InsufficientCapacity', 'SpotMaxPriceTooLow', 'InsufficientFreeAddressesInSubnet'])

/** The AWS error code of an SDK error (its `name`), or undefined for non-AWS errors. */
export function awsErrorCode (err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const e = err as { name?: unknown, Code?: unknown, $metadata?: unknown }
  if (typeof e.Code === 'string') return e.Code
  if (e.$metadata !== undefined && typeof e.name === 'string') return e.name
  return undefined
}

function isCredentialsProviderError (err: unknown): boolean {
  if (!(err instanceof Error)) return false
  return err.name === 'CredentialsProviderError' || err.name === 'TokenProviderError' ||
    /Could not load credentials|Unable to load credentials|credential/i.test(err.message) && !('$metadata' in err)
}

export interface ErrorContext {
  region: string
  /** What was being done, e.g. "launching host web1". */
  doing: string
  ami?: string
}

/** Turns an error from the SDK into a typed error; SupercloudErrors pass through unchanged. */
export function mapEc2Error (err: unknown, c: ErrorContext): SupercloudError {
  if (err instanceof SupercloudError) return err
  const code = awsErrorCode(err)
  const msg = err instanceof Error ? err.message : String(err)
  const where = `${c.doing} in ${c.region}`
  if (code === undefined && isCredentialsProviderError(err)) {
    return new Ec2Error('SC_EC2_CREDENTIALS', `no AWS credentials found while ${where}: ${msg}; ${CREDENTIALS_HELP}`, { cause: err })
  }
  if (code === undefined) return new Ec2Error('SC_EC2_API', `${where} failed: ${msg}`, { cause: err })
  const opts = { cause: err, awsCode: code }
  if (CREDENTIAL_CODES.has(code)) return new Ec2Error('SC_EC2_CREDENTIALS', `AWS rejected the credentials while ${where} (${code}: ${msg}); ${CREDENTIALS_HELP}`, opts)
  if (PERMISSION_CODES.has(code)) return new Ec2Error('SC_EC2_PERMISSION', `the AWS identity may not do this while ${where} (${code}: ${msg}); grant the IAM permissions listed in docs/ec2.md`, opts)
  if (AMI_CODES.has(code)) return new Ec2Error('SC_EC2_AMI_NOT_FOUND', `AMI ${c.ami ?? '(unknown)'} does not exist in region ${c.region} (${code}); AMI ids differ per region: look up the id of the same image in ${c.region}`, opts)
  if (QUOTA_CODES.has(code)) return new Ec2Error('SC_EC2_QUOTA', `an EC2 quota stops ${where} (${code}: ${msg}); raise it in the Service Quotas console or use fewer or smaller instances`, opts)
  if (CAPACITY_CODES.has(code)) return new Ec2Error('SC_EC2_CAPACITY', `EC2 has no capacity for ${where} right now (${code}: ${msg}); try another instance type, availability zone or on-demand instead of spot`, opts)
  if (THROTTLE_CODES.has(code)) return new Ec2Error('SC_EC2_THROTTLED', `EC2 kept throttling requests while ${where}, even after retries with backoff (${code}); wait a minute and run again`, opts)
  return new Ec2Error('SC_EC2_API', `${where} failed: ${code}: ${msg}`, opts)
}
