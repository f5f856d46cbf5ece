// Generates crates/core/src/testdata/key_vectors.json: Key-credential attestations and assertions
// produced exactly as the Dfns SDK signers do, so the Rust verifier is tested against real client bytes.
// Usage: node make-vectors.mjs > ../../crates/core/src/testdata/key_vectors.json
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto'

const b64u = (buf) => Buffer.from(buf).toString('base64url')

const generate = {
  p256: () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }),
  ed25519: () => generateKeyPairSync('ed25519'),
  rsa: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
}

// BrowserKeySigner.create (dfns.md §4a): the signature covers a fingerprint that binds clientData to the PEM.
function attestation(challenge, publicKeyPem, privateKey) {
  const clientData = Buffer.from(JSON.stringify({ type: 'key.create', challenge }))
  const fingerprint = JSON.stringify({
    clientDataHash: createHash('sha256').update(clientData).digest('hex'),
    publicKey: publicKeyPem,
  })
  const signature = sign(undefined, Buffer.from(fingerprint), privateKey).toString('hex')
  return {
    clientData: b64u(clientData),
    attestationData: b64u(JSON.stringify({ publicKey: publicKeyPem, signature })),
  }
}

// AsymmetricKeySigner.sign (@dfns/sdk-keysigner 0.8.3): raw signature over the clientData bytes.
function assertion(clientDataObject, privateKey) {
  const clientData = Buffer.from(JSON.stringify(clientDataObject))
  return { clientData: b64u(clientData), signature: b64u(sign(undefined, clientData, privateKey)) }
}

const vectors = Object.entries(generate).map(([keyType, gen]) => {
  const { publicKey, privateKey } = gen()
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' })
  const challenge = b64u(randomBytes(32))
  return {
    keyType,
    publicKeyPem,
    challenge,
    attestation: attestation(challenge, publicKeyPem, privateKey),
    assertion: assertion({ type: 'key.get', challenge }, privateKey),
    // Browsers and the docs add these keys; servers must hash the bytes as received and ignore extra keys.
    clientDataWithOrigin: assertion(
      { type: 'key.get', challenge, origin: 'http://localhost', crossOrigin: false },
      privateKey,
    ),
  }
})

process.stdout.write(JSON.stringify(vectors, null, 2) + '\n')
