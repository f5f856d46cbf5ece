// End-to-end email-verification flow through the real @zitadel/client (v2 UserService) against an enroll server.
// Usage: node zitadel-flow.mjs <baseUrl> <configJsonPath> <protocol>
//   baseUrl:    http://127.0.0.1:<port> (plain HTTP; the server speaks HTTP/1.1 and h2c prior knowledge)
//   configJson: {"orgId": "...", "writerToken": "...", "plainToken": "...", "otherOrgToken": "..."}
//   protocol:   grpc | grpc-web-h1 | grpc-web-h2 | connect-json | connect-binary
// stdout carries only the final {"done":true,"protocol":...,"checks":[...]} line; logs go to stderr.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Code, ConnectError } from '@connectrpc/connect'
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node'
import { NewAuthorizationBearerInterceptor } from '@zitadel/client'
import { createServerTransport } from '@zitadel/client/node'
import { createUserServiceClient } from '@zitadel/client/v2'
import { ErrorDetailSchema } from '@zitadel/proto/zitadel/message_pb.js'

const [baseUrl, configPath, protocol] = process.argv.slice(2)
assert.ok(baseUrl && configPath && protocol, 'usage: node zitadel-flow.mjs <baseUrl> <configJsonPath> <protocol>')
const { orgId, writerToken, plainToken, otherOrgToken } = JSON.parse(readFileSync(configPath, 'utf8'))
const checks = []
const passed = (name) => {
  checks.push(name)
  console.error(`ok ${name}`)
}

// Nothing in this flow should take long; never let a hung connection stall the Rust test suite.
setTimeout(() => {
  console.error(`zitadel-flow (${protocol}) timed out; passed before: ${checks.join(', ')}`)
  process.exit(1)
}, 60_000).unref()

// createServerTransport is @zitadel/client's own (gRPC, HTTP/2 forced by connect-node). The other transports get the
// same bearer interceptor that createServerTransport installs.
function transportFor(token) {
  const interceptors = [NewAuthorizationBearerInterceptor(token)]
  switch (protocol) {
    case 'grpc':
      return createServerTransport(token, { baseUrl })
    case 'grpc-web-h1':
      return createGrpcWebTransport({ baseUrl, httpVersion: '1.1', interceptors })
    case 'grpc-web-h2':
      return createGrpcWebTransport({ baseUrl, httpVersion: '2', interceptors })
    case 'connect-json':
      return createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: false, interceptors })
    case 'connect-binary':
      return createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: true, interceptors })
    default:
      assert.fail(`unknown protocol ${protocol}`)
  }
}
const clientFor = (token) => createUserServiceClient(transportFor(token))

// Asserts a ConnectError with the given code; unless `id` is null, also the ZITADEL message suffix and ErrorDetail.
async function expectError(promise, code, id, messageKey) {
  let err
  try {
    await promise
  } catch (e) {
    err = e
  }
  assert.ok(err !== undefined, `expected ${Code[code]} ${id ?? ''}, but the call succeeded`)
  assert.ok(err instanceof ConnectError, `expected ConnectError ${Code[code]}, got ${err?.stack ?? err}`)
  assert.equal(err.code, code, `expected ${Code[code]}, got ${Code[err.code]}: ${err.rawMessage}`)
  if (id !== null) {
    assert.ok(err.rawMessage.endsWith(` (${id})`), `message ${JSON.stringify(err.rawMessage)} should end in (${id})`)
    const details = err.findDetails(ErrorDetailSchema).map(({ id, message }) => ({ id, message }))
    assert.deepEqual(details, [{ id, message: messageKey }], `error details of ${JSON.stringify(err.rawMessage)}`)
  }
  return err
}

// Every email RPC answers with zitadel.object.v2.Details of the user's aggregate.
function checkDetails(details, previousSequence = 0n) {
  assert.ok(details, 'details missing')
  assert.equal(details.resourceOwner, orgId)
  assert.equal(typeof details.sequence, 'bigint')
  assert.ok(details.sequence > previousSequence, `sequence ${details.sequence} should exceed ${previousSequence}`)
  assert.ok(details.changeDate, 'changeDate missing')
  assert.ok(details.changeDate.seconds > 0n, `changeDate ${JSON.stringify(details.changeDate, (_, v) => String(v))}`)
  return details.sequence
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function fetchMail(to) {
  const res = await fetch(`${baseUrl}/dev/mail?to=${encodeURIComponent(to)}`)
  assert.equal(res.status, 200, `GET /dev/mail?to=${to}`)
  const mails = await res.json()
  assert.ok(Array.isArray(mails), `mail list for ${to} is not an array`)
  for (const mail of mails) {
    assert.equal(mail.to, to)
    assert.equal(typeof mail.subject, 'string')
    assert.ok(mail.subject.length > 0, 'empty subject')
    assert.equal(typeof mail.text, 'string')
    assert.equal(typeof mail.html, 'string')
  }
  return mails
}

// Mail is sent asynchronously after the RPC reply, so poll until `count` mails have arrived (newest first).
async function waitForMail(to, count) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const mails = await fetchMail(to)
    if (mails.length >= count) {
      assert.equal(mails.length, count, `unexpected extra mail to ${to}`)
      return mails
    }
    assert.ok(Date.now() < deadline, `timed out waiting for mail #${count} to ${to} (have ${mails.length})`)
    await sleep(50)
  }
}

const escapeRegExp = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

// Finds the link starting with `prefix` in the text part and the same link (possibly &amp;-escaped) in the HTML part.
function linkIn(mail, prefix) {
  const pattern = new RegExp(`${escapeRegExp(prefix)}[^\\s"'<>]*`)
  const text = mail.text.match(pattern)?.[0]
  assert.ok(text, `no link ${prefix} in mail text: ${mail.text}`)
  const html = mail.html.match(pattern)?.[0]
  assert.ok(html, `no link ${prefix} in mail html: ${mail.html}`)
  assert.equal(html.replaceAll('&amp;', '&'), text, 'html and text links differ')
  return new URL(text)
}

const random = randomBytes(6).toString('hex')
const address = (n) => `zitadel-${protocol}-${random}${n ? `-${n}` : ''}@example.com`
const CODE = /^[A-Z0-9]{6}$/

async function main() {
  const writer = clientFor(writerToken)
  const plain = clientFor(plainToken)
  const otherOrg = clientFor(otherOrgToken)
  const nobody = clientFor('not-a-token')
  const expectedMail = new Map()
  const returnCode = { case: 'returnCode', value: {} }

  async function addUser(email) {
    const res = await writer.addHumanUser({
      organization: { org: { case: 'orgId', value: orgId } },
      profile: { givenName: 'Ada', familyName: 'Lovelace' },
      email: { email, verification: returnCode },
    })
    assert.ok(res.userId, 'userId missing')
    const sequence = checkDetails(res.details)
    assert.match(res.emailCode ?? '', CODE)
    expectedMail.set(email, 0)
    return { userId: res.userId, code: res.emailCode, sequence }
  }

  // 1.
  const email = address()
  const ada = await addUser(email)
  passed('add-human-user')

  // 2.
  const urlTemplate = 'https://app.example/verify?userID={{.UserID}}&code={{.Code}}&orgID={{.OrgID}}'
  const resent = await writer.resendEmailCode({
    userId: ada.userId,
    verification: { case: 'sendCode', value: { urlTemplate } },
  })
  assert.equal(resent.verificationCode, undefined)
  let sequence = checkDetails(resent.details, ada.sequence)
  passed('resend-send-code')

  // 3.
  expectedMail.set(email, 1)
  const [mail] = await waitForMail(email, 1)
  const link = linkIn(mail, 'https://app.example/verify?')
  assert.equal(link.origin + link.pathname, 'https://app.example/verify')
  assert.deepEqual([...link.searchParams.keys()], ['userID', 'code', 'orgID'])
  assert.equal(link.searchParams.get('userID'), ada.userId)
  assert.equal(link.searchParams.get('orgID'), orgId)
  const code = link.searchParams.get('code')
  assert.match(code, CODE)
  assert.notEqual(code, ada.code, 'resend must issue a new code')
  passed('mail-link')

  // 4.
  await expectError(
    writer.verifyEmail({ userId: ada.userId, verificationCode: ada.code }),
    Code.InvalidArgument,
    'COMMAND-eis9R',
    'Errors.User.Code.Invalid',
  )
  passed('old-code-invalid')

  // 5.
  const verified = await writer.verifyEmail({ userId: ada.userId, verificationCode: code })
  sequence = checkDetails(verified.details, sequence)
  passed('verify-email')

  // 6.
  await expectError(
    writer.resendEmailCode({ userId: ada.userId, verification: returnCode }),
    Code.FailedPrecondition,
    'EMAIL-5w5ilin4yt',
    'Errors.User.Code.Empty',
  )
  passed('resend-after-verify')

  // 7.
  await expectError(
    writer.verifyEmail({ userId: ada.userId, verificationCode: code }),
    Code.InvalidArgument,
    'COMMAND-eis9R',
    'Errors.User.Code.Invalid',
  )
  passed('verify-twice')

  // 8.
  await expectError(
    writer.resendEmailCode({ userId: `us-unknown${random}`, verification: returnCode }),
    Code.NotFound,
    'COMMAND-ieJ2e',
    'Errors.User.Email.NotFound',
  )
  passed('unknown-user')

  // 9. Resend needs user.write on the user's org (or being the user); VerifyEmail only a valid token.
  const bob = await addUser(address(2))
  const denied = [Code.PermissionDenied, 'AUTHZ-HKJD33', 'Errors.PermissionDenied']
  await expectError(plain.resendEmailCode({ userId: bob.userId, verification: returnCode }), ...denied)
  passed('permission-denied-plain')
  await expectError(otherOrg.resendEmailCode({ userId: bob.userId, verification: returnCode }), ...denied)
  passed('permission-denied-other-org')
  await expectError(
    plain.addHumanUser({
      organization: { org: { case: 'orgId', value: orgId } },
      profile: { givenName: 'Eve', familyName: 'Plain' },
      email: { email: address('denied'), verification: returnCode },
    }),
    ...denied,
  )
  expectedMail.set(address('denied'), 0)
  passed('add-user-permission-denied')
  const bobVerified = await plain.verifyEmail({ userId: bob.userId, verificationCode: bob.code })
  checkDetails(bobVerified.details, bob.sequence)
  passed('verify-without-permission')

  // 10.
  await expectError(
    nobody.resendEmailCode({ userId: bob.userId, verification: returnCode }),
    Code.Unauthenticated,
    null,
  )
  passed('unauthenticated')

  // 11. Templates may only use .UserID, .Code and .OrgID, and must parse as Go text/template.
  const carolEmail = address(3)
  const carol = await addUser(carolEmail)
  await expectError(
    writer.resendEmailCode({
      userId: carol.userId,
      verification: { case: 'sendCode', value: { urlTemplate: 'https://x.example/{{.PreferredLoginName}}' } },
    }),
    Code.InvalidArgument,
    'USERv2-ohSi5',
    'Errors.User.Email.InvalidURLTemplate',
  )
  passed('url-template-unknown-field')
  await expectError(
    writer.resendEmailCode({
      userId: carol.userId,
      verification: { case: 'sendCode', value: { urlTemplate: 'https://x.example/{{.Code' } },
    }),
    Code.InvalidArgument,
    'USERv2-ooD8p',
    'Errors.User.Email.InvalidURLTemplate',
  )
  passed('url-template-parse-error')

  // 12. No verification oneof: a mail with the server's default login link.
  const sent = await writer.sendEmailCode({ userId: carol.userId })
  assert.equal(sent.verificationCode, undefined)
  checkDetails(sent.details, carol.sequence)
  expectedMail.set(carolEmail, 1)
  const [carolMail] = await waitForMail(carolEmail, 1)
  const defaultPrefix = `${new URL('/ui/login/mail/verification', baseUrl).href}?`
  const defaultLink = linkIn(carolMail, defaultPrefix)
  assert.deepEqual([...defaultLink.searchParams.keys()].slice(0, 3), ['userID', 'code', 'orgID'])
  assert.equal(defaultLink.searchParams.get('userID'), carol.userId)
  assert.equal(defaultLink.searchParams.get('orgID'), orgId)
  const carolCode = defaultLink.searchParams.get('code')
  assert.match(carolCode, CODE)
  checkDetails((await writer.verifyEmail({ userId: carol.userId, verificationCode: carolCode })).details)
  passed('default-link')

  // 13. SetEmail replaces the pending code.
  const dave = await addUser(address(4))
  const daveEmail = address('4-new')
  const changed = await writer.setEmail({ userId: dave.userId, email: daveEmail, verification: returnCode })
  checkDetails(changed.details, dave.sequence)
  expectedMail.set(daveEmail, 0)
  assert.match(changed.verificationCode ?? '', CODE)
  await expectError(
    writer.verifyEmail({ userId: dave.userId, verificationCode: dave.code }),
    Code.InvalidArgument,
    'COMMAND-eis9R',
    'Errors.User.Code.Invalid',
  )
  checkDetails((await writer.verifyEmail({ userId: dave.userId, verificationCode: changed.verificationCode })).details)
  passed('set-email-return-code')
  await expectError(
    writer.setEmail({ userId: dave.userId, email: daveEmail, verification: returnCode }),
    Code.FailedPrecondition,
    'COMMAND-Uch5e',
    'Errors.User.Email.NotChanged',
  )
  passed('set-email-not-changed')

  // 14.
  const erin = await addUser(address(5))
  const erinEmail = address('5-new')
  const preVerified = await writer.setEmail({
    userId: erin.userId,
    email: erinEmail,
    verification: { case: 'isVerified', value: true },
  })
  checkDetails(preVerified.details, erin.sequence)
  assert.equal(preVerified.verificationCode, undefined)
  expectedMail.set(erinEmail, 0)
  await expectError(
    writer.resendEmailCode({ userId: erin.userId, verification: returnCode }),
    Code.FailedPrecondition,
    'EMAIL-5w5ilin4yt',
    'Errors.User.Code.Empty',
  )
  passed('set-email-verified')

  // 15. Give stray asynchronous mail a moment to show up, then compare every address.
  await sleep(300)
  for (const [to, count] of expectedMail) {
    assert.equal((await fetchMail(to)).length, count, `mail count for ${to}`)
  }
  passed('mail-counts')

  process.stdout.write(JSON.stringify({ done: true, protocol, checks }) + '\n')
}

try {
  await main()
  process.exit(0)
} catch (e) {
  if (e instanceof ConnectError) {
    const details = e.details.map((d) => ('desc' in d ? d.desc.typeName : `${d.type} ${Buffer.from(d.value).toString('hex')}`))
    console.error(`${e.stack}\ncode=${Code[e.code]} rawMessage=${JSON.stringify(e.rawMessage)} details=${JSON.stringify(details)}`)
  } else {
    console.error(e?.stack ?? e)
  }
  console.error(`passed before failure (${protocol}): ${checks.join(', ')}`)
  process.exit(1)
}
