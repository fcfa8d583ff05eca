import { test } from 'tap'
import { build, formPost, register } from '../helper.js'

test('login storm: when more password checks arrive than the hash queue holds, then the overflow is 503 temporarily_unavailable with Retry-After at once, never a 500, and the rest are answered', async (t) => {
  const app = await build(t, { PASSWORD_HASH_THREADS: 1, PASSWORD_HASH_QUEUE_MAX: 2, ARGON2_MEMORY_KIB: 32768, ARGON2_TIME_COST: 3 })
  const user = await register(app)
  const answers = await Promise.all(Array.from({ length: 8 }, async () =>
    await app.inject(formPost('/auth/token', { username: user.username, password: user.password }))))
  const statuses = answers.map(res => res.statusCode)
  t.ok(statuses.filter(s => s === 200).length >= 3, `the running and queued logins succeed (${statuses.join(' ')})`)
  const refused = answers.filter(res => res.statusCode === 503)
  t.ok(refused.length >= 1, 'the overflow is refused')
  for (const res of refused) {
    t.same(res.json(), { error: 'temporarily_unavailable', error_description: 'Too many password checks under way; retry shortly' })
    t.equal(res.headers['retry-after'], '1')
  }
  t.equal(statuses.filter(s => s !== 200 && s !== 503).length, 0, 'nothing else')
})
