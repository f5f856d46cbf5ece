// End-to-end registration, login and user-action flow through the real @dfns/sdk against an enroll server.
// Usage: node dfns-flow.mjs <baseUrl> <bootstrapJsonPath> <keyType: p256|ed25519|rsa>
// stdout carries only JSON lines for the Rust driver ({"advance"}, {"grant"}, {"done"}); logs go to stderr.
import assert from 'node:assert/strict'
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { BaseAuthApi, DfnsApiClient, DfnsAuthenticator, DfnsError } from '@dfns/sdk'
import { AsymmetricKeySigner } from '@dfns/sdk-keysigner'

const [baseUrl, bootstrapPath, keyType] = process.argv.slice(2)
const { orgId, adminToken, adminCredentialId, adminPrivateKey } = JSON.parse(readFileSync(bootstrapPath, 'utf8'))
const checks = []
const passed = (name) => {
  checks.push(name)
  console.error(`ok ${name}`)
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
async function ask(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
  const { value, done } = await stdinLines.next()
  assert.ok(!done, `driver closed stdin while answering ${JSON.stringify(obj)}`)
  assert.equal(value.trim(), 'ok')
}

async function expectDfnsError(promise, status, messageSubstring) {
  try {
    await promise
  } catch (e) {
    assert.ok(e instanceof DfnsError, `expected DfnsError ${status}, got ${e?.stack ?? e}`)
    assert.equal(e.httpStatus, status, `unexpected status; message: ${e.message}`)
    if (messageSubstring) assert.ok(e.message?.includes(messageSubstring), `message ${JSON.stringify(e.message)}`)
    return e
  }
  assert.fail(`expected DfnsError ${status}, but the call succeeded`)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// Mail is sent asynchronously after the HTTP reply, so poll until `count` mails have arrived.
async function registrationCode(to, count) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const res = await fetch(`${baseUrl}/dev/mail?to=${encodeURIComponent(to)}`)
    assert.equal(res.status, 200)
    const mails = await res.json()
    if (mails.length >= count) {
      assert.equal(mails.length, count, 'unexpected extra mail')
      const code = mails[0].text.match(/\b[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}\b/)?.[0]
      assert.ok(code, `no registration code in mail: ${mails[0].text}`)
      return code
    }
    assert.ok(Date.now() < deadline, `timed out waiting for mail #${count} to ${to}`)
    await sleep(50)
  }
}

function generateKey(type) {
  const pair =
    type === 'p256' ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    : type === 'ed25519' ? generateKeyPairSync('ed25519')
    : type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : assert.fail(`unknown key type ${type}`)
  return {
    publicPem: pair.publicKey.export({ type: 'spki', format: 'pem' }),
    privatePem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }),
  }
}

// AsymmetricKeySigner cannot create credentials; this mirrors the BrowserKeySigner attestation (dfns.md §4a).
function keyCredentialSigner(credId, { publicPem, privatePem }) {
  const assertions = new AsymmetricKeySigner({ credId, privateKey: privatePem })
  return {
    async create(challenge) {
      const clientData = Buffer.from(JSON.stringify({ type: 'key.create', challenge: challenge.challenge }))
      const fingerprint = JSON.stringify({
        clientDataHash: createHash('sha256').update(clientData).digest('hex'),
        publicKey: publicPem,
      })
      const signature = sign(undefined, Buffer.from(fingerprint), privatePem).toString('hex')
      return {
        credentialKind: 'Key',
        credentialInfo: {
          credId,
          clientData: clientData.toString('base64url'),
          attestationData: Buffer.from(JSON.stringify({ publicKey: publicPem, signature })).toString('base64url'),
        },
      }
    },
    sign: (challenge) => assertions.sign(challenge),
  }
}

const newEmail = () => `${keyType}-${randomBytes(6).toString('hex')}@example.com`

async function main() {
  // 1. Admin creates the employee (signed user action).
  const admin = new DfnsApiClient({
    baseUrl,
    orgId,
    authToken: adminToken,
    signer: new AsymmetricKeySigner({ credId: adminCredentialId, privateKey: adminPrivateKey }),
  })
  const email = newEmail()
  const created = await admin.auth.createUser({ body: { email, kind: 'CustomerEmployee' } })
  assert.equal(created.username, email)
  assert.equal(created.orgId, orgId)
  assert.equal(created.kind, 'CustomerEmployee')
  assert.match(created.userId, /^us-/)
  assert.equal(created.isActive, true)
  assert.equal(created.isRegistered, false)
  assert.equal(created.isServiceAccount, false)
  assert.ok(Array.isArray(created.permissionAssignments))
  passed('create-user')

  // 2.
  const firstCode = await registrationCode(email, 1)
  passed('mail-code')

  // 3. Resend is unauthenticated and rate limited, hence the clock jump past the cooldown.
  await ask({ advance: 61 })
  const anonymous = new DfnsApiClient({ baseUrl, orgId })
  assert.deepEqual(await anonymous.auth.resendRegistrationCode({ body: { username: email, orgId } }), {
    message: 'success',
  })
  const code = await registrationCode(email, 2)
  assert.notEqual(code, firstCode)
  passed('resend-code')

  // 4.
  await expectDfnsError(
    anonymous.auth.createRegistrationChallenge({ body: { orgId, username: email, registrationCode: firstCode } }),
    401,
  )
  passed('old-code-void')

  // 5. orgId makes the SDK check the temporaryAuthenticationToken's org claim on the client side too.
  const key = generateKey(keyType)
  const credId = randomBytes(32).toString('base64url')
  const authenticator = new DfnsAuthenticator({ baseUrl, orgId, signer: keyCredentialSigner(credId, key) })
  const registered = await authenticator.register({ orgId, username: email, registrationCode: code })
  assert.match(registered.credential.uuid, /^cr-/)
  assert.equal(registered.credential.kind, 'Key')
  assert.equal(registered.user.id, created.userId)
  assert.equal(registered.user.username, email)
  assert.equal(registered.user.orgId, orgId)
  passed('register')

  // 6.
  await expectDfnsError(authenticator.register({ orgId, username: email, registrationCode: code }), 401)
  passed('register-code-single-use')

  // 7.
  const { token } = await authenticator.login({ orgId, username: email })
  const parts = token.split('.')
  assert.equal(parts.length, 3)
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'))['https://custom/app_metadata']
  assert.equal(claims?.orgId, orgId)
  assert.equal(claims?.userId, created.userId)
  passed('login')

  // 8. The same signed call is refused until the driver grants the permissions.
  const signer = new AsymmetricKeySigner({ credId, privateKey: key.privatePem })
  const user = new DfnsApiClient({ baseUrl, orgId, authToken: token, signer })
  await expectDfnsError(
    user.auth.createUser({ body: { email: newEmail(), kind: 'CustomerEmployee' } }),
    403,
    'is not authorized to perform operation (Auth:Users:Create)',
  )
  passed('permission-denied')
  await ask({ grant: { userId: created.userId, permissions: ['Auth:Users:Create', 'Auth:Types:Employee'] } })
  const secondEmail = newEmail()
  const second = await user.auth.createUser({ body: { email: secondEmail, kind: 'CustomerEmployee' } })
  assert.equal(second.username, secondEmail)
  assert.match(second.userId, /^us-/)
  passed('signed-user-action')

  // 9. Negative cases, step by step with the low-level calls.
  const opts = { baseUrl, orgId, authToken: token }
  const bodyFor = (address) => JSON.stringify({ email: address, kind: 'CustomerEmployee' })
  async function userActionFor(payload, actionSigner = signer) {
    const challenge = await BaseAuthApi.createUserActionChallenge(
      {
        userActionPayload: payload,
        userActionHttpMethod: 'POST',
        userActionHttpPath: '/auth/users',
        userActionServerKind: 'Api',
      },
      opts,
    )
    const firstFactor = await actionSigner.sign(challenge)
    const { userAction } = await BaseAuthApi.signUserActionChallenge(
      { challengeIdentifier: challenge.challengeIdentifier, firstFactor },
      opts,
    )
    return userAction
  }
  async function postUser(body, userAction) {
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
    if (userAction) headers['x-dfns-useraction'] = userAction
    const res = await fetch(`${baseUrl}/auth/users`, { method: 'POST', headers, body })
    return { status: res.status, json: await res.json() }
  }

  // 9a.
  const body = bodyFor(newEmail())
  const userAction = await userActionFor(body)
  const first = await postUser(body, userAction)
  assert.equal(first.status, 200, JSON.stringify(first.json))
  const replayed = await postUser(body, userAction)
  assert.deepEqual([replayed.status, replayed.json.error?.message], [400, 'user action has already been used'])
  passed('user-action-replay')

  // 9b.
  const expectInvalidAction = ({ status, json }) =>
    assert.deepEqual([status, json.error?.message], [403, 'user action signature is missing or invalid'])
  const tamperedAction = await userActionFor(bodyFor(newEmail()))
  expectInvalidAction(await postUser(bodyFor(newEmail()), tamperedAction))
  passed('user-action-tampered-body')
  expectInvalidAction(await postUser(bodyFor(newEmail())))
  passed('user-action-missing')

  // 9c. Right credId, wrong private key: only the server's signature check can catch this.
  const impostor = new AsymmetricKeySigner({ credId, privateKey: generateKey(keyType).privatePem })
  await expectDfnsError(userActionFor(bodyFor(newEmail()), impostor), 401)
  passed('wrong-key')

  // 9d. Challenges live five minutes.
  const loginChallenge = await BaseAuthApi.createUserLoginChallenge({ orgId, username: email }, { baseUrl, orgId })
  await ask({ advance: 301 })
  const lateAssertion = await signer.sign(loginChallenge)
  await expectDfnsError(
    BaseAuthApi.createUserLogin(
      { challengeIdentifier: loginChallenge.challengeIdentifier, firstFactor: lateAssertion },
      { baseUrl, orgId },
    ),
    400,
    'Challenge token is not valid.',
  )
  passed('expired-challenge')

  // 9e.
  const loggedOut = await user.auth.logout()
  assert.ok(loggedOut && typeof loggedOut === 'object')
  await expectDfnsError(
    BaseAuthApi.createUserActionChallenge(
      {
        userActionPayload: bodyFor(newEmail()),
        userActionHttpMethod: 'POST',
        userActionHttpPath: '/auth/users',
        userActionServerKind: 'Api',
      },
      opts,
    ),
    401,
  )
  passed('logout')

  process.stdout.write(JSON.stringify({ done: true, checks }) + '\n')
}

try {
  await main()
  process.exit(0)
} catch (e) {
  console.error(e instanceof DfnsError ? `${e.stack}\n${e}` : (e?.stack ?? e))
  console.error(`passed before failure: ${checks.join(', ')}`)
  process.exit(1)
}
