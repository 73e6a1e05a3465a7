import t from 'tap'
import { EC2ServiceException } from '@aws-sdk/client-ec2'
import { mapEc2Error } from '../../../../drivers/ec2/errors.ts'
import { SupercloudError } from '../../../../core/errors.ts'

/** An error as the SDK raises it for an EC2 error response. */
function awsError (code: string, message = 'm'): EC2ServiceException {
  return new EC2ServiceException({ name: code, $fault: 'client', $metadata: { httpStatusCode: 400 }, message })
}

const c = { region: 'eu-west-1', doing: 'launching host web1', ami: 'ami-0123456789abcdef0' }

t.test('AWS error codes map to stable codes', async t => {
  const cases: Array<[string, string]> = [
    ['AuthFailure', 'SC_EC2_CREDENTIALS'], ['MissingAuthenticationToken', 'SC_EC2_CREDENTIALS'], ['ExpiredToken', 'SC_EC2_CREDENTIALS'],
    ['UnauthorizedOperation', 'SC_EC2_PERMISSION'],
    ['InvalidAMIID.NotFound', 'SC_EC2_AMI_NOT_FOUND'], ['InvalidAMIID.Malformed', 'SC_EC2_AMI_NOT_FOUND'],
    ['InstanceLimitExceeded', 'SC_EC2_QUOTA'], ['VcpuLimitExceeded', 'SC_EC2_QUOTA'], ['MaxSpotInstanceCountExceeded', 'SC_EC2_QUOTA'],
    ['InsufficientInstanceCapacity', 'SC_EC2_CAPACITY'],
    ['RequestLimitExceeded', 'SC_EC2_THROTTLED'], ['Throttling', 'SC_EC2_THROTTLED'],
    ['InvalidParameterValue', 'SC_EC2_API']
  ]
  for (const [aws, code] of cases) {
    const e = mapEc2Error(awsError(aws), c)
    t.equal(e.code, code, `${aws} -> ${code}`)
    t.match(e, { awsCode: aws })
  }
  t.match(mapEc2Error(awsError('InvalidAMIID.NotFound'), c).message, /AMI ami-0123456789abcdef0 does not exist in region eu-west-1/)
  t.match(mapEc2Error(awsError('InstanceLimitExceeded'), c).message, /Service Quotas/)
})

t.test('credential provider failures', async t => {
  const e = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' })
  const m = mapEc2Error(e, c)
  t.equal(m.code, 'SC_EC2_CREDENTIALS')
  t.match(m.message, /AWS_ACCESS_KEY_ID/)
  t.match(m.message, /aws sso login/)
})

t.test('other errors', async t => {
  const own = new SupercloudError('SC_CANCELLED', 'x')
  t.equal(mapEc2Error(own, c), own, 'typed errors pass through')
  t.equal(mapEc2Error(new Error('socket hang up'), c).code, 'SC_EC2_API')
})
