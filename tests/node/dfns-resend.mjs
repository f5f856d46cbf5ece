// Calls auth.resendRegistrationCode through the real @dfns/sdk and prints what the SDK returned
// (or the DfnsError it threw) as one JSON line.
// Usage: node dfns-resend.mjs <baseUrl> <orgId> <username>
import { DfnsApiClient, DfnsError } from '@dfns/sdk'

const [baseUrl, orgId, username] = process.argv.slice(2)
const client = new DfnsApiClient({ baseUrl, orgId })

try {
  const result = await client.auth.resendRegistrationCode({ body: { username, orgId } })
  console.log(JSON.stringify({ ok: true, result }))
} catch (error) {
  if (error instanceof DfnsError) {
    console.log(JSON.stringify({ ok: false, status: error.httpStatus, message: error.message }))
  } else {
    console.log(JSON.stringify({ ok: false, error: String(error) }))
  }
}
