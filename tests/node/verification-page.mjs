// Drives the hosted email-verification page (GET/POST /ui/login/mail/verification) in headless Chromium, as a user
// and as a link scanner would. Started by the Rust test suite, which prepares the users, writes the config and checks
// the database afterwards (e.g. that the scanner's user is still unverified).
// Usage: node verification-page.mjs <configJsonPath>
//   configJson: {"baseUrl": "http://127.0.0.1:<port>", "screenshots": "<dir>" | null,
//                "links": {"verify": url, "scanner": url, "wrong": url, "german": url, "french": url}}
//   Each link is a full URL of the page: {baseUrl}/ui/login/mail/verification?userID=…&code=…&orgID=…
//     verify:  correct code, user unverified          scanner: correct code, user unverified (never submitted)
//     wrong:   wrong code, resend cooldown running    german:  user whose saved language is de
//     french:  user without a saved language
// Needs Debian's Chromium at /usr/bin/chromium (override with CHROMIUM_PATH); never downloads a browser.
// stdout carries only the final {"done":true,"checks":[...]} line; logs go to stderr.
import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const [configPath] = process.argv.slice(2)
assert.ok(configPath, 'usage: node verification-page.mjs <configJsonPath>')
const { baseUrl, screenshots, links } = JSON.parse(readFileSync(configPath, 'utf8'))
const PAGE_PATH = '/ui/login/mail/verification'
const LANGUAGES = ['en', 'de', 'fr']
const origin = new URL(baseUrl).origin

const checks = []
const passed = (name) => {
  checks.push(name)
  console.error(`ok ${name}`)
}

let browser
// Nothing here should take long; never let a hung page or browser stall the Rust test suite.
setTimeout(() => {
  console.error(`verification-page timed out after 60 s; passed before: ${checks.join(', ') || 'none'}`)
  setTimeout(() => process.exit(1), 5_000).unref()
  Promise.resolve(browser?.close())
    .catch(() => {})
    .finally(() => process.exit(1))
}, 60_000).unref()

// Each link must be the page on the server under test and carry the three parameters.
const link = {}
for (const name of ['verify', 'scanner', 'wrong', 'german', 'french']) {
  assert.ok(links?.[name], `config.links.${name} is missing`)
  const url = new URL(links[name])
  assert.equal(url.origin, origin, `links.${name} is not on baseUrl`)
  assert.equal(url.pathname, PAGE_PATH, `links.${name} is not the verification page`)
  const param = (key) => {
    const value = url.searchParams.get(key)
    assert.ok(value, `links.${name} has no ${key}`)
    return value
  }
  link[name] = { href: url.href, userID: param('userID'), code: param('code'), orgID: param('orgID') }
}
if (screenshots) mkdirSync(screenshots, { recursive: true })

// Playwright already passes --disable-background-networking, --disable-component-update, --disable-sync and
// --no-first-run; they are repeated here so that the launch stays quiet offline whatever Playwright's defaults become.
const launchOptions = {
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
}

/** A fresh context (no cookies, no cache) with the given browser locale, recording every request it makes. */
async function newContext(locale) {
  const context = await browser.newContext({ locale })
  context.setDefaultTimeout(10_000)
  context.setDefaultNavigationTimeout(10_000)
  const requests = []
  context.on('request', (request) => requests.push(request))
  context.on('console', (message) => {
    // 4xx outcome pages and a missing favicon log "Failed to load resource"; anything else is worth seeing.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
      console.error(`  [console] ${message.text()}`)
    }
  })
  return { context, requests }
}

/** The page must not load anything from elsewhere (it shows a code; the machine is offline anyway). */
function assertSameOrigin(requests, where) {
  for (const request of requests) {
    const url = request.url()
    if (/^(data|blob|about):/.test(url)) continue
    assert.equal(new URL(url).origin, origin, `${where}: the page requested ${url}`)
  }
}

/** Referrer-Policy: no-referrer and Cache-Control: no-store, on every page the server answers. */
async function assertHeaders(response, where) {
  const referrer = (await response.headerValues('referrer-policy')).flatMap((v) => v.split(','))
  // Browsers apply the last policy they understand; the contract asks for exactly no-referrer.
  assert.equal(referrer.at(-1)?.trim().toLowerCase(), 'no-referrer', `${where}: Referrer-Policy is ${referrer}`)
  const cache = (await response.headerValues('cache-control')).flatMap((v) => v.split(','))
  assert.ok(
    cache.some((directive) => directive.trim().toLowerCase() === 'no-store'),
    `${where}: Cache-Control is ${cache.join(',') || 'missing'}`,
  )
  const type = (await response.headerValue('content-type')) ?? ''
  assert.match(type, /^text\/html/i, `${where}: Content-Type is ${type}`)
}

/** The page's state: its single <main>'s data-outcome, <html lang>, title and a bit of text for error messages. */
function readPage(page) {
  return page.evaluate(() => ({
    mains: document.querySelectorAll('main').length,
    outcome: document.querySelector('main')?.dataset.outcome ?? null,
    lang: document.documentElement.lang,
    title: document.title,
    text: (document.body?.innerText ?? '').replace(/\s+/g, ' ').slice(0, 300),
  }))
}

/** Asserts the outcome of the page now shown, saves the screenshot and returns the page state. */
async function expectOutcome(page, response, caseName, expected) {
  const where = `${caseName} (${expected})`
  const state = await readPage(page)
  assert.equal(state.mains, 1, `${where}: ${state.mains} <main> elements (HTTP ${response.status()}): ${state.text}`)
  assert.equal(
    state.outcome,
    expected,
    `${where}: data-outcome is ${state.outcome} (HTTP ${response.status()}): ${state.text}`,
  )
  assert.ok(LANGUAGES.includes(state.lang), `${where}: <html lang="${state.lang}">`)
  assert.ok(state.title.trim(), `${where}: no <title>`)
  await assertHeaders(response, where)
  if (screenshots) {
    await page.screenshot({ path: join(screenshots, `${caseName}-${expected}.png`), fullPage: true })
  }
  console.error(`  ${caseName}: ${expected} (HTTP ${response.status()}, lang ${state.lang})`)
  return state
}

/** Opens a link (plain GET navigation) and checks that it shows the pre-filled form and nothing else. */
async function openForm(page, linkInfo, caseName) {
  const response = await page.goto(linkInfo.href, { waitUntil: 'load' })
  assert.ok(response, `${caseName}: no response for ${linkInfo.href}`)
  assert.equal(response.request().method(), 'GET')
  assert.equal(response.status(), 200, `${caseName}: GET answered HTTP ${response.status()}`)
  const state = await expectOutcome(page, response, caseName, 'form')
  const form = await page.evaluate(() => {
    const form = document.querySelector('form#verify')
    if (!form) return null
    const input = (name) => form.querySelector(`input[name="${name}"]`)
    const button = document.querySelector('#verify-button')
    const code = input('code')
    return {
      forms: document.querySelectorAll('form#verify').length,
      method: form.method, // normalised by the DOM: "get" unless the attribute says post
      userID: input('userID') && { type: input('userID').type, value: input('userID').value },
      orgID: input('orgID') && { type: input('orgID').type, value: input('orgID').value },
      code: code && { type: code.type, value: code.value },
      button: button && {
        ownerForm: button.form?.id ?? null,
        type: button.type,
        text: (button instanceof HTMLInputElement ? button.value : button.textContent).replace(/\s+/g, ' ').trim(),
      },
    }
  })
  const where = `${caseName} (form)`
  assert.ok(form, `${where}: no form#verify`)
  assert.equal(form.forms, 1, `${where}: several form#verify`)
  assert.equal(form.method, 'post', `${where}: the form must POST`)
  assert.deepEqual(form.userID, { type: 'hidden', value: linkInfo.userID }, `${where}: hidden userID`)
  assert.deepEqual(form.orgID, { type: 'hidden', value: linkInfo.orgID }, `${where}: hidden orgID`)
  assert.ok(form.code, `${where}: no code input`)
  assert.equal(form.code.type, 'text', `${where}: the code input is not a text input`)
  assert.equal(form.code.value, linkInfo.code, `${where}: the code input is not pre-filled with the link's code`)
  assert.ok(await page.locator('form#verify input[name="code"]').isVisible(), `${where}: the code input is hidden`)
  assert.ok(form.button, `${where}: no #verify-button`)
  assert.equal(form.button.ownerForm, 'verify', `${where}: #verify-button does not submit form#verify`)
  assert.equal(form.button.type, 'submit', `${where}: #verify-button is not a submit button`)
  assert.ok(form.button.text, `${where}: #verify-button has no text`)
  assert.ok(await page.locator('#verify-button').isVisible(), `${where}: #verify-button is hidden`)
  return { response, lang: state.lang, title: state.title, buttonText: form.button.text }
}

/** Runs `action` (a click or key press), waits for the page it leads to and checks that it was answered to a POST. */
async function submit(page, action, caseName, expected) {
  const [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action()])
  assert.ok(response, `${caseName}: the submission did not load a page`)
  let request = response.request()
  while (request.redirectedFrom()) request = request.redirectedFrom()
  assert.equal(request.method(), 'POST', `${caseName}: the submission was a ${request.method()}`)
  assert.equal(new URL(request.url()).origin, origin, `${caseName}: the form posted to ${request.url()}`)
  await expectOutcome(page, response, caseName, expected)
  return request
}

const clickVerify = (page) => () => page.click('#verify-button')
const clickResend = (page) => () => page.click('#resend-button')

async function withContext(locale, body) {
  const { context, requests } = await newContext(locale)
  try {
    const page = await context.newPage()
    await body(page, requests)
  } finally {
    await context.close()
  }
}

/** 1. A link scanner opens the link (browser and plain fetch): the form is shown, nothing is submitted. */
async function scanner() {
  const info = link.scanner
  await withContext('en-US', async (page, requests) => {
    await openForm(page, info, 'scanner')
    // Give any script on the page the chance to submit by itself: it must not.
    await page.waitForLoadState('networkidle')
    assert.equal((await readPage(page)).outcome, 'form', 'scanner: the page left the form by itself')
    const posts = requests.filter((request) => request.method() !== 'GET')
    assert.deepEqual(
      posts.map((request) => `${request.method()} ${request.url()}`),
      [],
      'scanner: opening the link sent more than GETs',
    )
    assertSameOrigin(requests, 'scanner')

    // A plain fetch, as a mail gateway's link checker does (no cookies, no JavaScript, follows redirects).
    const response = await fetch(info.href, {
      headers: { accept: 'text/html,*/*', 'user-agent': 'Mozilla/5.0 (compatible; enroll-link-scanner-test)' },
    })
    assert.equal(response.status, 200, `scanner: fetch answered HTTP ${response.status}`)
    assert.equal(response.headers.get('referrer-policy')?.split(',').at(-1).trim(), 'no-referrer', 'scanner: fetch')
    assert.match(response.headers.get('cache-control') ?? '', /(^|,)\s*no-store\s*(,|$)/i, 'scanner: fetch')
    const html = await response.text()
    const parsed = await page.evaluate((source) => {
      const document = new DOMParser().parseFromString(source, 'text/html')
      return {
        outcome: document.querySelector('main')?.dataset.outcome ?? null,
        code: document.querySelector('form#verify input[name="code"]')?.value ?? null,
      }
    }, html)
    assert.deepEqual(parsed, { outcome: 'form', code: info.code }, 'scanner: what fetch got')
  })
  passed('scanner')
}

/** 2. The user submits the pre-filled code: verified; the same link submitted again: already-verified. */
async function verify() {
  await withContext('en-US', async (page, requests) => {
    await openForm(page, link.verify, 'verify')
    await submit(page, clickVerify(page), 'verify', 'verified')
    await openForm(page, link.verify, 'verify')
    await submit(page, clickVerify(page), 'verify', 'already-verified')
    assertSameOrigin(requests, 'verify')
  })
  passed('verify')
}

/** 3. A wrong code: invalid, then resend (resent), then again: invalid, resend while the cooldown runs: cooldown. */
async function wrong() {
  await withContext('en-US', async (page, requests) => {
    await openForm(page, link.wrong, 'wrong')
    await submit(page, clickVerify(page), 'wrong', 'invalid')
    assert.equal(await page.locator('form#resend').count(), 1, 'wrong (invalid): no form#resend')
    assert.ok(await page.locator('form#resend #resend-button').isVisible(), 'wrong (invalid): no visible #resend-button')
    await submit(page, clickResend(page), 'wrong', 'resent')

    await openForm(page, link.wrong, 'wrong')
    await submit(page, clickVerify(page), 'wrong', 'invalid')
    await submit(page, clickResend(page), 'wrong', 'cooldown')
    assertSameOrigin(requests, 'wrong')
  })
  passed('wrong')
}

// Button texts per language, filled by `german` and used again by `french`.
const buttonText = {}

/** 4. A user whose saved language is de, in an English browser: German page. */
async function german() {
  await withContext('en-US', async (page, requests) => {
    // The English reference: the French link's user has no saved language, so an en-US browser gets English.
    const english = await openForm(page, link.french, 'german')
    assert.equal(english.lang, 'en', 'german: the user without a saved language, in an en-US browser, is not served en')
    buttonText.en = english.buttonText

    const shown = await openForm(page, link.german, 'german')
    assert.equal(shown.lang, 'de', 'german: the saved language de does not win over Accept-Language en-US')
    assert.notEqual(shown.buttonText, buttonText.en, 'german: the button text is not localised')
    buttonText.de = shown.buttonText
    assertSameOrigin(requests, 'german')
  })
  passed('german')
}

/** 5. A user without a saved language, in a French browser (Accept-Language: fr-FR): French page. */
async function french() {
  await withContext('fr-FR', async (page, requests) => {
    const shown = await openForm(page, link.french, 'french')
    const sent = await shown.response.request().headerValue('accept-language')
    assert.match(sent ?? '', /^fr\b/i, `french: Chromium sent Accept-Language ${sent}`)
    assert.equal(shown.lang, 'fr', `french: Accept-Language ${sent} is not honoured`)
    assert.notEqual(shown.buttonText, buttonText.en, 'french: the button text is the English one')
    assert.notEqual(shown.buttonText, buttonText.de, 'french: the button text is the German one')
    assertSameOrigin(requests, 'french')
  })
  passed('french')
}

/** 6. The user replaces the code by typing (another wrong one) and submits with Enter: invalid. */
async function typed() {
  const info = link.wrong
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
  let typedCode
  do {
    typedCode = Array.from({ length: Math.max(info.code.length, 6) }, () => alphabet[randomInt(alphabet.length)]).join('')
  } while (typedCode === info.code)
  await withContext('en-US', async (page, requests) => {
    await openForm(page, info, 'typed')
    const input = page.locator('form#verify input[name="code"]')
    await input.fill('')
    await input.click()
    await page.keyboard.type(typedCode, { delay: 10 })
    assert.equal(await input.inputValue(), typedCode, 'typed: the code input did not take the typed code')
    const post = await submit(page, () => page.keyboard.press('Enter'), 'typed', 'invalid')
    const body = new URLSearchParams(post.postData() ?? '')
    assert.equal(body.get('code'), typedCode, 'typed: the form did not post the typed code')
    assert.equal(body.get('userID'), info.userID, 'typed: the form did not post the userID')
    assert.equal(body.get('orgID'), info.orgID, 'typed: the form did not post the orgID')
    assertSameOrigin(requests, 'typed')
  })
  passed('typed')
}

try {
  const started = Date.now()
  browser = await chromium.launch(launchOptions)
  console.error(`Chromium ${browser.version()} launched in ${Date.now() - started} ms`)
  await scanner()
  await verify()
  await wrong()
  await german()
  await french()
  await typed()
} catch (error) {
  console.error(`verification-page failed; passed before: ${checks.join(', ') || 'none'}`)
  throw error
} finally {
  await browser?.close()
}
console.log(JSON.stringify({ done: true, checks }))
