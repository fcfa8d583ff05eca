import { readFile } from 'node:fs/promises'
import { test } from 'tap'
import SwaggerParser from '@apidevtools/swagger-parser'
import { createConfig, lint } from '@redocly/openapi-core'
import { generateFiles } from '../scripts/openapi-files.js'
import { bearer, build, login, register } from './helper.js'
import { checkResponse, committedDocument } from './openapi-check.js'

interface Operation {
  operationId: string
  summary: string
  tags: string[]
  security: Array<Record<string, string[]>>
  responses: Record<string, { content?: Record<string, { example?: unknown, schema: { $ref?: string, examples?: unknown[] } }> }>
}
interface Document {
  paths: Record<string, Record<string, Operation>>
  components: {
    schemas: Record<string, { examples?: unknown[] }>
    securitySchemes: { OAuth2PasswordBearer: { flows: { password: { scopes: Record<string, string> } } } }
  }
}
const doc = committedDocument as unknown as Document

const operations = Object.entries(doc.paths).flatMap(([path, methods]) => Object.entries(methods).map(([method, op]) => ({ key: `${method} ${path}`, op })))

test('openapi.json: when the code generates the document and its client types, then the committed files are the same', async (t) => {
  for (const { name, file, content } of await generateFiles()) {
    t.equal(await readFile(file, 'utf8'), content, `${name} is current (npm run openapi writes it)`)
  }
})

test('openapi.json: when the running service serves its document, then it is the committed one', async (t) => {
  const app = await build(t)
  const served = (await app.inject({ url: '/openapi.json' })).json()
  t.same(served, committedDocument)
})

test('openapi.json: when validated by swagger-parser, then it is a valid OpenAPI 3.1 document', async (t) => {
  const api = await SwaggerParser.validate(structuredClone(committedDocument) as never) as { openapi: string }
  t.equal(api.openapi, '3.1.0')
})

test('openapi.json: when linted with Redocly\'s recommended-strict rules, then no problems', async (t) => {
  const config = await createConfig({
    extends: ['recommended-strict'],
    rules: {
      // The service is not published under a licence; the document should not invent one.
      'info-license': 'off'
    }
  })
  const problems = await lint({ ref: new URL('../openapi.json', import.meta.url).pathname, config })
  // The health probes take no input a client could get wrong, and are not rate limited: they have no 4xx to declare.
  const healthProbes = new Set(['#/paths/~1health~1live/get/responses', '#/paths/~1health~1ready/get/responses'])
  const remaining = problems
    .filter(p => !(p.ruleId === 'operation-4xx-response' && healthProbes.has(p.location[0]?.pointer ?? '')))
    .map(p => `${p.ruleId}: ${p.message} at ${p.location[0]?.pointer ?? '?'}`)
  t.same(remaining, [])
})

test('openapi.json: when any operation is read, then it has a camelCase operationId, a summary, tags, its security and examples', async (t) => {
  const ids = operations.map(({ op }) => op.operationId)
  t.equal(new Set(ids).size, ids.length, 'operationIds are unique')
  const publicOperations = new Set(['post /auth/register', 'post /auth/password/forgot', 'post /auth/password/reset', 'post /auth/email/verify', 'post /auth/token', 'post /auth/revoke', 'get /.well-known/jwks.json', 'get /.well-known/oauth-authorization-server', 'get /health/live', 'get /health/ready'])
  // Service clients authenticate with their id and secret (RFC 6749 section 2.3.1), not a bearer token.
  const clientOperations = new Set(['post /auth/introspect'])
  for (const { key, op } of operations) {
    t.match(op.operationId, /^[a-z][A-Za-z]+$/, `${key}: camelCase operationId`)
    t.ok(op.summary, `${key}: summary`)
    t.ok(op.tags.length > 0, `${key}: tags`)
    if (key.includes(' /admin/') || key.includes(' /sessions/ended')) {
      // Administration and the ended-session feed: one scope the password flow declares, so that Swagger UI's Authorize offers it.
      const declared = Object.keys(doc.components.securitySchemes.OAuth2PasswordBearer.flows.password.scopes)
      t.equal(op.security.length, 1, `${key}: security`)
      const scopes = op.security[0]?.OAuth2PasswordBearer ?? []
      t.ok(scopes.length === 1 && declared.includes(scopes[0]), `${key}: security names a declared scope (${scopes.join(' ')})`)
    } else {
      t.same(op.security, publicOperations.has(key) ? [] : clientOperations.has(key) ? [{ ClientBasic: [] }] : [{ OAuth2PasswordBearer: [] }], `${key}: security`)
    }
    for (const [status, response] of Object.entries(op.responses)) {
      for (const [mediaType, { example, schema }] of Object.entries(response.content ?? {})) {
        const component = schema.$ref?.replace('#/components/schemas/', '')
        const examples = example ?? schema.examples ?? (component !== undefined ? doc.components.schemas[component].examples : undefined)
        t.ok(examples, `${key} ${status} ${mediaType}: has an example`)
      }
    }
  }
})

test('openapi.json: when any operation is read, then 429 and 503 are declared wherever the service can answer them, each with Retry-After', async (t) => {
  // The routes that need neither the database nor a session check: liveness, and the public keys (held in memory).
  const noDatabase = new Set(['get /health/live', 'get /.well-known/jwks.json', 'get /.well-known/oauth-authorization-server'])
  // The probes a load balancer sends are never rate limited.
  const unlimited = new Set(['get /health/live', 'get /health/ready'])
  for (const { key, op } of operations) {
    const responses = op.responses as Record<string, { headers?: Record<string, unknown> }>
    t.equal(responses['503'] !== undefined, !noDatabase.has(key), `${key}: 503 declared iff it can need the database`)
    t.equal(responses['429'] !== undefined, !unlimited.has(key), `${key}: 429 declared iff it is rate limited`)
    for (const status of ['429', '503']) {
      if (responses[status] !== undefined) t.ok(responses[status].headers?.['Retry-After'], `${key}: ${status} has Retry-After`)
    }
  }
})

test('openapi.json: when the examples are checked against their own schemas, then each one validates', async (t) => {
  let checked = 0
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      for (const [status, response] of Object.entries(op.responses)) {
        for (const [mediaType, { example }] of Object.entries(response.content ?? {})) {
          if (example === undefined) continue
          const problem = checkResponse({ method, url: path.replace(/\{[^}]+\}/g, '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41'), statusCode: Number(status), contentType: mediaType, body: JSON.stringify(example) })
          t.equal(problem, undefined, `${method} ${path} ${status}: example matches`)
          checked += 1
        }
      }
    }
  }
  t.ok(checked > 20, `${checked} examples checked`)
})

test('checkResponse: when an answer drifts from the document, then it says how', async (t) => {
  const ok = { method: 'GET', url: '/users/me', statusCode: 200, contentType: 'application/json; charset=utf-8', body: JSON.stringify({ id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', username: 'alice', email: 'alice@example.com', email_verified: false, created_at: '2026-11-23T10:00:00.000Z' }) }
  t.equal(checkResponse(ok), undefined, 'a documented answer passes')
  t.match(checkResponse({ ...ok, statusCode: 418 }), /status not documented/)
  t.match(checkResponse({ ...ok, contentType: 'text/html' }), /content type text\/html not documented/)
  t.match(checkResponse({ ...ok, body: JSON.stringify({ id: 'x' }) }), /does not match the documented schema/)
  t.match(checkResponse({ ...ok, body: JSON.stringify({ ...JSON.parse(ok.body), password_hash: '$argon2id$...' }) }), /must NOT have additional properties/, 'a leaked field is caught')
  t.match(checkResponse({ method: 'DELETE', url: '/users/me/sessions', statusCode: 204, contentType: undefined, body: 'x' }), /without a body/)
  t.equal(checkResponse({ method: 'GET', url: '/docs/static/index.html', statusCode: 200, contentType: 'text/html', body: '<html>' }), undefined, 'hidden routes are not checked')
})

test('any documented route: when a signed-in client sends a body the route does not take, then a documented 4xx', async (t) => {
  const app = await build(t)
  const user = await register(app)
  const bodies = [
    { 'content-type': 'text/plain', payload: 'hello', status: 415 },
    { 'content-type': 'application/json', payload: '{bad', status: 400 },
    { 'content-type': 'application/json', payload: JSON.stringify({ pad: 'x'.repeat(20000) }), status: 413 }
  ]
  for (const [method, url] of [['POST', '/auth/logout'], ['DELETE', '/users/me/sessions'], ['DELETE', '/users/me/sessions/0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41']] as const) {
    for (const body of bodies) {
      const token = await login(app, user.username, user.password)
      // build()'s inject checks each answer against the document: an undocumented status would throw here.
      const res = await app.inject({ method, url, headers: { ...bearer(token), 'content-type': body['content-type'] }, payload: body.payload })
      t.equal(res.statusCode, body.status, `${method} ${url} with ${body['content-type']} (${body.payload.length} bytes)`)
    }
  }
})
