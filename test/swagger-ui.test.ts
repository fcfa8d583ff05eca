import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { test } from 'tap'
import type { Page } from 'playwright-core'
import { sql } from 'drizzle-orm'
import { build, register } from './helper.js'
import { checkResponse } from './openapi-check.js'
import { EXECUTABLE, launchBrowser } from './browser.js'
export const SCREENSHOT = new URL('../artifacts/swagger-ui-authorized.png', import.meta.url)

async function tryGetCurrentUser (page: Page): Promise<string> {
  return await tryOperation(page, '#operations-users-getCurrentUser')
}

async function tryOperation (page: Page, id: string): Promise<string> {
  const operation = page.locator(id)
  await operation.locator('.opblock-summary').waitFor()
  // Open it unless it already is (after a reload the page may restore it open): a click would close it again.
  if (!(await operation.getAttribute('class') ?? '').includes('is-open')) await operation.locator('.opblock-summary').click()
  const tryOut = operation.locator('.try-out__btn')
  await tryOut.waitFor()
  if ((await tryOut.textContent())?.trim() === 'Try it out') await tryOut.click()
  await operation.locator('button.execute').click()
  const status = operation.locator('.live-responses-table .response .response-col_status').first()
  await status.waitFor({ timeout: 10_000 })
  return (await status.textContent())?.trim() ?? ''
}

test('Swagger UI: when a person authorizes with the password flow and tries GET /users/me, then 200, and the authorization survives a reload', async (t) => {
  t.ok(existsSync(EXECUTABLE), `a Chromium at ${EXECUTABLE} (apt-get install chromium, or set CHROMIUM_PATH)`)
  const app = await build(t, { RATE_LIMIT_ENABLED: true })
  const user = await register(app)
  const base = await app.listen({ host: '127.0.0.1', port: 0 })

  const browser = await launchBrowser(t)
  const page = await browser.newPage()
  // The page's own calls to the API are answers too: each must match the document.
  const problems: string[] = []
  const pageErrors: string[] = []
  page.on('pageerror', (error) => { pageErrors.push(error.message) })
  page.on('response', async (response) => {
    const url = new URL(response.url())
    if (url.origin !== base || url.pathname.startsWith('/docs') || url.pathname === '/openapi.json') return
    const problem = checkResponse({
      method: response.request().method(),
      url: url.pathname,
      statusCode: response.status(),
      contentType: response.headers()['content-type'],
      body: await response.text().catch(() => '')
    })
    if (problem !== undefined) problems.push(problem)
  })

  await page.goto(`${base}/docs/`)
  await page.locator('.swagger-ui .btn.authorize').click()
  // The password flow's own form: the dialog also holds the HTTP Basic form of service clients (introspection).
  const modal = page.locator('.modal-ux .auth-container').filter({ hasText: 'OAuth2PasswordBearer' })
  await modal.locator('#oauth_username').fill(user.username)
  await modal.locator('#oauth_password').fill(user.password)
  const token = page.waitForResponse(r => r.url() === `${base}/auth/token` && r.request().method() === 'POST')
  await modal.locator('.auth-btn-wrapper button.authorize').click()
  t.equal((await token).status(), 200, 'the Authorize button logged in at the token endpoint')
  await modal.locator('.auth-btn-wrapper button.btn-done').click()
  t.ok(await page.locator('.swagger-ui .auth-wrapper .authorize.locked').isVisible(), 'the page shows itself authorized')

  t.equal(await tryGetCurrentUser(page), '200', 'Try it out on GET /users/me answers 200')
  const body = await page.locator('#operations-users-getCurrentUser .live-responses-table .response-col_description pre').first().textContent()
  t.match(body, user.username, 'the response shows the signed-in user')
  await mkdir(new URL('.', SCREENSHOT), { recursive: true })
  await page.screenshot({ path: SCREENSHOT.pathname, fullPage: true })

  await page.reload()
  await page.locator('.swagger-ui .btn.authorize').waitFor()
  t.ok(await page.locator('.swagger-ui .auth-wrapper .authorize.locked').isVisible(), 'still authorized after a reload')
  t.equal(await tryGetCurrentUser(page), '200', 'and GET /users/me still answers 200')

  t.same(problems, [], 'every API answer the page received matched the document')
  t.same(pageErrors, [], 'no script errors on the page')
})

test('Swagger UI: when an administrator authorizes with a chosen scope, then the token carries just that scope and GET /admin/users answers 200', async (t) => {
  t.ok(existsSync(EXECUTABLE), `a Chromium at ${EXECUTABLE} (apt-get install chromium, or set CHROMIUM_PATH)`)
  const app = await build(t)
  const user = await register(app)
  await app.database.db.execute(sql`insert into user_roles (user_id, role_name) values (${user.id}::uuid, 'admin')`)
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const browser = await launchBrowser(t)
  const page = await browser.newPage()

  await page.goto(`${base}/docs/`)
  await page.locator('.swagger-ui .btn.authorize').click()
  // The password flow's own form: the dialog also holds the HTTP Basic form of service clients (introspection).
  const modal = page.locator('.modal-ux .auth-container').filter({ hasText: 'OAuth2PasswordBearer' })
  await modal.locator('#oauth_username').fill(user.username)
  await modal.locator('#oauth_password').fill(user.password)
  // The password flow declares the service's scopes: the dialog offers each as a checkbox.
  await modal.locator('label[for="users:read-password-checkbox-OAuth2PasswordBearer"]').click()
  const token = page.waitForResponse(r => r.url() === `${base}/auth/token` && r.request().method() === 'POST')
  await modal.locator('.auth-btn-wrapper button.authorize').click()
  const answer = await token
  t.equal(answer.status(), 200)
  t.match(answer.request().postData(), /scope=users(%3A|:)read/, 'the chosen scope was asked for')
  t.equal((await answer.json()).scope, 'users:read', 'and granted alone')
  await modal.locator('.auth-btn-wrapper button.btn-done').click()

  t.equal(await tryOperation(page, '#operations-admin-adminListUsers'), '200', 'Try it out on GET /admin/users answers 200')
})

test('Swagger UI: when /docs is opened over plain http under a host name other than localhost, then the UI renders and the CSP upgrades nothing', async (t) => {
  t.ok(existsSync(EXECUTABLE), `a Chromium at ${EXECUTABLE} (apt-get install chromium, or set CHROMIUM_PATH)`)
  const app = await build(t)
  const base = new URL(await app.listen({ host: '127.0.0.1', port: 0 }))
  // A name Chromium treats as any remote host (not potentially trustworthy, as localhost is), resolved to this server.
  const browser = await launchBrowser(t, ['--host-resolver-rules=MAP auth.test 127.0.0.1'])
  const page = await browser.newPage()
  const failed: string[] = []
  page.on('requestfailed', (request) => { failed.push(request.url()) })

  const answer = await page.goto(`http://auth.test:${base.port}/docs/`)
  t.equal(answer?.status(), 200)
  const csp = answer?.headers()['content-security-policy'] ?? ''
  t.notMatch(csp, /upgrade-insecure-requests/)
  for (const directive of ["default-src 'self'", "object-src 'none'", "frame-ancestors 'self'", "script-src-attr 'none'"]) t.match(csp, directive, `the rest stays strict: ${directive}`)
  t.notMatch(csp, /unsafe-inline|unsafe-eval/)

  await page.locator('.swagger-ui .info .title').waitFor({ timeout: 15_000 })
  t.match(await page.locator('.swagger-ui .info .title').textContent(), /Auth service/, 'the UI rendered the document')
  t.ok(await page.locator('#operations-users-getCurrentUser').isVisible(), 'with its operations')
  t.same(failed, [], 'every asset loaded over http')
})
