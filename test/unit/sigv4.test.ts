import { SignatureV4 } from '@smithy/signature-v4'
import { describe, expect, it } from 'vitest'
import { canonicalPath, canonicalQuery, signRequest, uriEncode } from '../../src/providers/sigv4.js'
import { Sha256 } from '../support/fake-bedrock.js'

// The AWS SigV4 test suite (awslabs/aws-c-auth tests/aws-signing-test-suite/v4, header-signed-request.txt).
const SUITE = {
  credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' },
  region: 'us-east-1',
  service: 'service',
  date: new Date('2015-08-30T12:36:00Z'),
}
const HOST = { host: 'example.amazonaws.com' }
const SESSION_TOKEN = '6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267'

describe('AWS SigV4 test suite', () => {
  it.each([
    ['get-vanilla', 'GET', '/', '', {}, '', 'host;x-amz-date', '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31'],
    ['get-vanilla-query-order-key-case', 'GET', '/', 'Param2=value2&Param1=value1', {}, '', 'host;x-amz-date', 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500'],
    [
      'get-vanilla-query-unreserved',
      'GET',
      '/',
      '-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz',
      {},
      '',
      'host;x-amz-date',
      '9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197',
    ],
    ['get-vanilla-query-order-encoded', 'GET', '/', 'Param-3=Value3&Param=Value2&%E1%88%B4=Value1', {}, '', 'host;x-amz-date', '371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac'],
    ['get-utf8', 'GET', '/ሴ', '', {}, '', 'host;x-amz-date', '8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85'],
    ['get-space-normalized', 'GET', '/example space/', '', {}, '', 'host;x-amz-date', '652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741'],
    ['get-slashes-normalized', 'GET', '//example//', '', {}, '', 'host;x-amz-date', '9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84'],
    [
      'get-header-value-trim',
      'GET',
      '/',
      '',
      { 'My-Header1': ' value1', 'My-Header2': ' "a   b   c"' },
      '',
      'host;my-header1;my-header2;x-amz-date',
      'acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736',
    ],
    ['post-vanilla', 'POST', '/', '', {}, '', 'host;x-amz-date', '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b'],
    [
      'post-x-www-form-urlencoded',
      'POST',
      '/',
      '',
      {
        'Content-Type': 'application/x-www-form-urlencoded',
        'Content-Length': '13',
        'x-amz-content-sha256': '9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e',
      },
      'Param1=value1',
      'content-length;content-type;host;x-amz-content-sha256;x-amz-date',
      'd3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b',
    ],
  ] as const)('%s', (_name, method, path, query, headers, body, signedHeaders, signature) => {
    const signed = signRequest({ method, path, query, headers: { ...HOST, ...headers }, body: Buffer.from(body) }, SUITE)
    expect(signed.authorization).toBe(
      `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    )
    expect(signed['x-amz-date']).toBe('20150830T123600Z')
  })

  it('get-vanilla-with-session-token', () => {
    const signed = signRequest(
      { method: 'GET', path: '/', query: '', headers: HOST, body: Buffer.alloc(0) },
      { ...SUITE, credentials: { ...SUITE.credentials, sessionToken: SESSION_TOKEN } },
    )
    expect(signed['x-amz-security-token']).toBe(SESSION_TOKEN)
    expect(signed.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8',
    )
  })
})


describe('agrees with the AWS SDK signer (@smithy/signature-v4) on Bedrock requests', () => {
  const date = new Date('2026-03-14T09:26:53Z')
  const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }

  it.each([
    ['an inference profile id (colon encoded by the SDK)', '/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke', '', '{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[]}', undefined],
    [
      'an ARN (slash and colons encoded)',
      '/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse-stream',
      '',
      '{"messages":[{"role":"user","content":[{"text":"héllo 日本"}]}]}',
      'FQoGZXIvYXdzEJr//////////wEaDEXAMPLEsessiontoken',
    ],
    ['a query string and a binary body', '/async-invoke', 'maxResults=10&statusEquals=InProgress&submitTimeAfter=2026-01-01T00%3A00%3A00Z', '\u0000\u00ff\u0010', undefined],
    ['dot and empty segments', '/model//./x/../anthropic.claude-v2/invoke', '', '{}', undefined],
  ])('%s', async (_name, path, query, body, sessionToken) => {
    const headers = {
      host: 'bedrock-runtime.eu-west-1.amazonaws.com',
      'content-type': 'application/json',
      accept: 'application/json',
      'x-amzn-bedrock-trace': 'ENABLED',
      'user-agent': 'test/1.0',
      'accept-encoding': 'identity',
    }
    const creds = { ...credentials, ...(sessionToken === undefined ? {} : { sessionToken }) }
    const ours = signRequest(
      { method: 'POST', path, query, headers, body: Buffer.from(body, 'latin1') },
      { credentials: creds, region: 'eu-west-1', service: 'bedrock', date, contentSha256: true },
    )
    const signer = new SignatureV4({ credentials: creds, region: 'eu-west-1', service: 'bedrock', sha256: Sha256 })
    const decodedQuery: Record<string, string> = {}
    for (const [name, value] of new URLSearchParams(query)) decodedQuery[name] = value
    const theirs = await signer.sign(
      { method: 'POST', protocol: 'https:', hostname: headers.host, path, query: decodedQuery, headers: { ...headers }, body: Buffer.from(body, 'latin1') },
      { signingDate: date },
    )
    expect(ours.authorization).toBe(theirs.headers.authorization)
    expect(ours['x-amz-content-sha256']).toBe(theirs.headers['x-amz-content-sha256'])
    expect(ours.authorization).not.toContain('user-agent')
  })
})

describe('canonical pieces', () => {
  it.each([
    ['/', '/'],
    ['', '/'],
    ['/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke', '/model/us.anthropic.claude-3-5-haiku-20241022-v1%253A0/invoke'],
    ['/a%2Fb/c', '/a%252Fb/c'],
    ['//a/./b/../c/', '/a/c/'],
  ])('canonical path of %j is %j', (path, canonical) => {
    expect(canonicalPath(path)).toBe(canonical)
  })

  it.each([
    ['', ''],
    ['b=2&a=1&a=0', 'a=0&a=1&b=2'],
    ['flag&x=a+b', 'flag=&x=a%2Bb'],
    ['k=%7e%20!', 'k=~%20%21'],
  ])('canonical query of %j is %j', (query, canonical) => {
    expect(canonicalQuery(query)).toBe(canonical)
  })

  it('encodes everything but unreserved characters', () => {
    expect(uriEncode("a-_.~!*'() /:")).toBe('a-_.~%21%2A%27%28%29%20%2F%3A')
  })
})
