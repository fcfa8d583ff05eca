import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'tap'
import { as, build, loginPair, register, REPO_ROOT, registerAdmin } from './helper.js'

/** A small deterministic generator, so that a failing request can be made again. */
function generator (seed: number): () => number {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
    return state / 2_147_483_648
  }
}

// Values that have turned into 5xx somewhere: wrong types, lengths past every limit, encodings, look-alike ids.
const STRINGS = [
  '', ' ', 'a'.repeat(150), 'a'.repeat(5000), 'urn:uuid:0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', '{0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41}',
  '0B5E3C1E8F0A4C6E9A573D2F1B7C9E41', '%00', '%E0%A4%A', '..%2F..%2Fetc%2Fpasswd', '😀'.repeat(40), '\u202e', 'null', '-1', '1e309',
  '00000000-0000-0000-0000-000000000000', "'; drop table users; --"
]
const VALUES: unknown[] = [null, true, -1, Number.POSITIVE_INFINITY, 2 ** 53, [], {}, [1, 'x'], { $ne: null }, ...STRINGS.slice(0, 6)]

interface Operation { method: string, path: string, requestBody?: unknown, parameters?: Array<{ in: string, name: string }> }

test('fuzzing from the document: when every operation gets random hostile paths, queries and bodies, then every answer is documented (status, type, body) and none is a 5xx', async (t) => {
  const doc = JSON.parse(await readFile(join(REPO_ROOT, 'openapi.json'), 'utf8')) as { paths: Record<string, Record<string, Omit<Operation, 'method' | 'path'>>> }
  // build() checks every answer against openapi.json and fails the test on any drift.
  const app = await build(t)
  const root = await registerAdmin(app)
  const random = generator(20261201)
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)]
  const operations: Operation[] = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => ({ method: method.toUpperCase(), path, ...op })))
  let sent = 0
  for (const op of operations) {
    // A fresh token for each operation: an earlier one may have ended the session.
    const token = (await loginPair(app, root)).access
    for (let i = 0; i < 12; i++) {
      const url = op.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(pick(STRINGS)).slice(0, 6000))
      const query = (op.parameters ?? []).filter(p => p.in === 'query').map(p => `${p.name}=${encodeURIComponent(String(pick(VALUES)))}`).join('&')
      const headers: Record<string, string> = random() < 0.8 ? { authorization: `Bearer ${token}` } : {}
      let payload: string | undefined
      if (op.requestBody !== undefined || random() < 0.2) {
        const body = random() < 0.2 ? pick(VALUES) : Object.fromEntries(Array.from({ length: 1 + Math.floor(random() * 4) }, () => [pick(['username', 'email', 'password', 'token', 'scope', 'roles', 'disabled', 'grant_type', 'refresh_token', 'current_password', 'new_password', 'description', 'scopes', 'q', 'x']), pick(VALUES)]))
        payload = JSON.stringify(body)
        headers['content-type'] = pick(['application/json', 'application/json', 'application/x-www-form-urlencoded', 'text/plain', 'application/json; charset=latin1'])
      }
      // Logging out or deleting ourselves would only make the rest 401s: those have their own tests.
      if (op.method === 'DELETE' && (op.path === '/users/me' || op.path === '/users/me/sessions')) continue
      const res = await app.inject({ method: op.method as 'GET', url: query === '' ? url : `${url}?${query}`, headers, payload })
      sent++
      t.ok(res.statusCode < 500, `${op.method} ${url.slice(0, 80)}: ${res.statusCode} ${res.body.slice(0, 120)}`)
    }
  }
  t.ok(sent > 200, `${sent} requests over ${operations.length} operations`)
})

test('ids in paths: when an id passes the uuid format but PostgreSQL would refuse it (urn:uuid:...), then 400 naming the field, never a 500', async (t) => {
  const app = await build(t)
  const root = await registerAdmin(app)
  const user = await register(app)
  const pair = await loginPair(app, user)
  const urn = `urn:uuid:${randomUUID()}`
  const requests = [
    as(pair.access, { method: 'DELETE', url: `/users/me/sessions/${urn}` }),
    as(root.token, { method: 'GET', url: `/admin/users/${urn}` }),
    as(root.token, { method: 'GET', url: `/admin/users/${urn}/sessions` }),
    as(root.token, { method: 'PATCH', url: `/admin/users/${urn}`, payload: { disabled: true } })
  ]
  for (const request of requests) {
    const res = await app.inject(request)
    t.equal(res.statusCode, 400, `${request.method} ${request.url}`)
    t.equal(res.json().errors?.[0]?.field, 'id', `${request.method} ${request.url}: the field`)
  }
})
