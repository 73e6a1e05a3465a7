import t from 'tap'
import { errorXml, expectedSignature, filters, parseAuthorization, parseQuery, renderXml, responseXml, statusFor, tagSpecs } from '../../../../drivers/ec2/fake-server/protocol.ts'
import { cidrContains, matchFilters } from '../../../../drivers/ec2/fake-server/filters.ts'

t.test('query bodies become trees', async t => {
  const q = parseQuery('Action=RunInstances&Version=2016-11-15&ImageId=ami-1&SecurityGroupId.1=sg-a&SecurityGroupId.2=sg-b' +
    '&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=supercloud&TagSpecification.1.Tag.1.Value=x' +
    '&TagSpecification.2.ResourceType=volume&TagSpecification.2.Tag.1.Key=k&TagSpecification.2.Tag.1.Value=v' +
    '&InstanceMarketOptions.MarketType=spot&Filter.1.Name=tag%3Asupercloud&Filter.1.Value.1=x&Filter.1.Value.2=y')
  t.equal(q.Action, 'RunInstances')
  t.same(q.SecurityGroupId, ['sg-a', 'sg-b'])
  t.same(q.InstanceMarketOptions, { MarketType: 'spot' })
  t.same(tagSpecs(q, 'instance'), { supercloud: 'x' })
  t.same(tagSpecs(q, 'volume'), { k: 'v' })
  t.same(filters(q), [{ name: 'tag:supercloud', values: ['x', 'y'] }])
})

t.test('responses and errors are EC2 XML', async t => {
  t.equal(renderXml(['a', [['b', 'x<y'], ['c', []], undefined]]), '<a><b>x&lt;y</b><c/></a>')
  const ok = responseXml('CreateTags', 'req-1', [['return', true]])
  t.match(ok, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<CreateTagsResponse xmlns="http:\/\/ec2.amazonaws.com\/doc\/2016-11-15\/"><requestId>req-1<\/requestId><return>true<\/return><\/CreateTagsResponse>$/)
  t.equal(errorXml('InvalidAMIID.NotFound', "The image id '[ami-1]' does not exist", 'r2'),
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id &apos;[ami-1]&apos; does not exist</Message></Error></Errors><RequestID>r2</RequestID></Response>')
  t.same(['AuthFailure', 'MissingAuthenticationToken', 'RequestLimitExceeded', 'InstanceLimitExceeded', 'InvalidAMIID.NotFound'].map(statusFor), [401, 403, 503, 400, 400])
})

t.test('SigV4: the Authorization header and the signature', async t => {
  t.equal(parseAuthorization(undefined), undefined)
  t.equal(parseAuthorization('Basic abc'), undefined)
  // The worked example of AWS's Signature Version 4 documentation (IAM ListUsers, 2015-08-30).
  const header = 'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7'
  const auth = parseAuthorization(header)
  t.same(auth && { ...auth, signature: '' }, { accessKeyId: 'AKIDEXAMPLE', date: '20150830', region: 'us-east-1', service: 'iam', signedHeaders: ['content-type', 'host', 'x-amz-date'], signature: '' })
  if (auth === undefined) return
  const sig = expectedSignature({
    method: 'GET', path: '/', query: 'Action=ListUsers&Version=2010-05-08',
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', host: 'iam.amazonaws.com', 'x-amz-date': '20150830T123600Z' },
    body: Buffer.alloc(0), auth, secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
  })
  t.equal(sig, auth.signature, 'matches the documented signature')
})

t.test('filters and CIDRs', async t => {
  const tags = { supercloud: 'sc1', 'supercloud:host': 'web1' }
  t.ok(matchFilters([{ name: 'tag:supercloud', values: ['sc1'] }, { name: 'instance-state-name', values: ['pending', 'running'] }], { 'instance-state-name': ['running'] }, tags))
  t.notOk(matchFilters([{ name: 'tag:supercloud', values: ['sc2'] }], {}, tags))
  t.ok(matchFilters([{ name: 'tag:supercloud:host', values: ['web*'] }], {}, tags), 'wildcards')
  t.ok(matchFilters([{ name: 'tag-key', values: ['supercloud'] }], {}, tags))
  t.throws(() => matchFilters([{ name: 'bogus', values: ['x'] }], {}, tags), { code: 'InvalidParameterValue' })
  t.ok(cidrContains('127.0.0.1/32', '127.0.0.1'))
  t.notOk(cidrContains('127.0.0.1/32', '127.0.0.2'))
  t.ok(cidrContains('198.18.0.0/15', '198.19.4.5'))
  t.ok(cidrContains('0.0.0.0/0', '8.8.8.8'))
})
