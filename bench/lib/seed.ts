// Data written straight into the database by SQL (generate_series: seconds, not argon2 per user), to a chosen size:
// users with the user role, one session each, and a tenth of them ended within the last minutes (inside the window
// every instance keeps listed as ended). Seeded users cannot log in, and need not: the scenarios log in as their own.
import type postgres from 'postgres'

export interface Seeded {
  users: number
  sessions: number
  endedSessions: number
  seconds: number
}

/** Seeded usernames are 'u' and 12 hex digits of md5(n): the prefix 'u' plus two of them matches about 1 in 256. */
export const SEARCH_PREFIX = 'uab'
const SEEDED_HASH = 'seeded: no password'

/**
 * `users` users, as many sessions, and `users / 10` of those ended within the last `endedWithinSeconds` (spread
 * evenly, so the newest ended just now); then ANALYZE, as autovacuum would soon.
 */
export async function seed (sql: postgres.Sql, users: number, endedWithinSeconds: number): Promise<Seeded> {
  const started = performance.now()
  const ended = Math.floor(users / 10)
  await sql`insert into users (username, email, password_hash)
    select 'u' || substr(md5(n::text), 1, 12), 'u' || substr(md5(n::text), 1, 12) || '@example.com', ${SEEDED_HASH}
    from generate_series(1, ${users}::int) as n on conflict do nothing`
  await sql`insert into user_roles (user_id, role_name) select id, 'user' from users where password_hash = ${SEEDED_HASH} on conflict do nothing`
  // One session per seeded user, created within the last week; row_number picks which ones ended.
  await sql`insert into sessions (user_id, created_at, last_used_at, expires_at, ended_at, end_reason)
    select id, now() - interval '7 days' * random(), now() - interval '1 day' * random(), now() + interval '30 days',
      case when n <= ${ended}::int then now() - make_interval(secs => ${endedWithinSeconds}::float8 * n / ${Math.max(ended, 1)}::int) end,
      case when n <= ${ended}::int then 'logout' end
    from (select id, row_number() over () as n from users where password_hash = ${SEEDED_HASH}) as seeded`
  for (const table of ['users', 'user_roles', 'sessions']) await sql.unsafe(`analyze ${table}`)
  const [counts] = await sql<Array<{ users: number, sessions: number, ended: number }>>`select
    (select count(*)::int from users) as users, (select count(*)::int from sessions) as sessions,
    (select count(*)::int from sessions where ended_at is not null) as ended`
  return { users: counts.users, sessions: counts.sessions, endedSessions: counts.ended, seconds: (performance.now() - started) / 1000 }
}
