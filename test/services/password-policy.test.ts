import { test } from 'tap'
import { createPasswordPolicy, PasswordList } from '../../src/services/password-policy.js'

test('PasswordList: when the shipped list loads, then it holds over 100,000 passwords of 8 or more characters and finds them without regard to case', async (t) => {
  const list = await PasswordList.load()
  t.ok(list.size > 100_000, `${list.size} entries`)
  for (const common of ['password123', 'PASSWORD123', 'iloveyou', 'qwertyuiop', '12345678', 'Passw0rd']) t.ok(list.has(common), common)
  for (const rare of ['zebra cobalt lantern 42', 'correct horse battery staple', '', 'x']) t.notOk(list.has(rare), JSON.stringify(rare))
  t.equal(await PasswordList.load(), list, 'loaded once per process')
})

test('password policy: when passwords break a rule, then the reason names the rule and never the password', async (t) => {
  const policy = createPasswordPolicy({ minLength: 10 })
  const owner = { username: 'Alice_W', email: 'wonder.land@example.com' }
  const cases: Array<[string, RegExp | undefined]> = [
    ['short one', /at least 10 characters/],
    ['😀😀😀😀😀😀😀😀😀', /at least 10 characters/], // nine code points, eighteen UTF-16 units
    ['😀😀😀😀😀😀😀😀😀😀', undefined],
    ['x'.repeat(129), /at most 128 characters/],
    ['x'.repeat(128).replace(/^x{10}/, 'uncommon10'), undefined],
    ['my alice_w secret!', /must not contain the username/],
    ['WONDER.LAND forever', /must not contain the email address/],
    ['password1234', /too common/],
    ['\uD800 lone surrogate here', /well-formed Unicode/],
    ['a perfectly fine one', undefined]
  ]
  for (const [password, reason] of cases) {
    const problem = await policy.problem(password, owner)
    if (reason === undefined) t.equal(problem, undefined, `${password.slice(0, 20)}: accepted`)
    else {
      t.match(problem, reason, `${password.slice(0, 20)}: ${String(reason)}`)
      t.notOk(problem?.includes(password), 'the reason does not echo the password')
    }
  }
  // A local part or username under three characters would forbid too much: it is not looked for.
  t.equal(await policy.problem('bo is a fine name here', { username: 'bo', email: 'bo@example.com' }), undefined)
})
