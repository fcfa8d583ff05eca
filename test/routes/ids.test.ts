import { randomUUID } from 'node:crypto'
import { test } from 'tap'
import { as, build, loginPair, register, registerAdmin } from '../helper.js'

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
