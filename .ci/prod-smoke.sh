#!/usr/bin/env bash
# The production path without Docker, step for step as the Dockerfile takes it: compile, install the runtime
# dependencies only (npm ci --omit=dev) beside dist/ and migrations/, migrate as a separate step, start the compiled
# server, drive register -> token -> /users/me over HTTP, then SIGTERM and a clean exit.
# Usage: .ci/prod-smoke.sh postgres://user@127.0.0.1:5432/postgres   (a user that may CREATE DATABASE)
# Needs node, npm (the npm registry, or its cache), curl and openssl; nothing else from the network.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_URL="${1:?usage: .ci/prod-smoke.sh postgres://user@host:port/db}"
ROOT="$(pwd)"
WORK="$(mktemp -d /tmp/auth-prod-smoke.XXXXXX)"
DB_NAME="auth_smoke_$(openssl rand -hex 6)"
SERVER_PID=""
DB_CREATED=0
RESULT=FAIL

# Runs a statement on the server with the `postgres` client the production install itself brings.
sql() {
  (cd "$WORK/app" && SMOKE_URL="$SERVER_URL" SMOKE_SQL="$1" node --input-type=module -e '
    const { default: postgres } = await import("postgres")
    const sql = postgres(process.env.SMOKE_URL, { max: 1, onnotice: () => {}, connect_timeout: 10 })
    try { await sql.unsafe(process.env.SMOKE_SQL) } finally { await sql.end({ timeout: 5 }) }
  ')
}

cleanup() {
  local code=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$DB_CREATED" = 1 ]; then sql "drop database if exists $DB_NAME with (force)" || echo "could not drop $DB_NAME" >&2; fi
  if [ "$RESULT" != PASS ] && [ -f "$WORK/server.log" ]; then echo "--- server log" >&2; tail -n 50 "$WORK/server.log" >&2; fi
  rm -rf "$WORK"
  if [ "$RESULT" = PASS ] && [ "$code" = 0 ]; then echo "prod-smoke: PASS"; else echo "prod-smoke: FAIL" >&2; exit 1; fi
}
trap cleanup EXIT

fail() { echo "prod-smoke: $*" >&2; exit 1; }

echo "== build (npm run build)"
npm run build --silent

echo "== runtime folder: package.json, package-lock.json, dist/, migrations/; npm ci --omit=dev"
mkdir "$WORK/app"
cp package.json package-lock.json "$WORK/app/"
cp -R dist migrations "$WORK/app/"
(cd "$WORK/app" && npm ci --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
for dev_only in tsx typescript tap drizzle-kit eslint @types/node; do
  [ ! -e "$WORK/app/node_modules/$dev_only" ] || fail "dev-only package $dev_only is installed in the runtime folder"
done
[ ! -e "$WORK/app/node_modules/.bin/tsx" ] || fail "a TypeScript loader (tsx) is on the runtime PATH"
echo "no dev-only package installed"

echo "== fresh database $DB_NAME"
sql "create database $DB_NAME"
DB_CREATED=1
DATABASE_URL="$(node -e 'const u = new URL(process.argv[1]); u.pathname = "/" + process.argv[2]; console.log(u.toString())' "$SERVER_URL" "$DB_NAME")"
PORT="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
BASE="http://127.0.0.1:$PORT"
METRICS_PORT="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
# A clean environment, as in the image: only what the Dockerfile and a deploy would set.
RUN_ENV=(env -i "PATH=$PATH" "HOME=$WORK" NODE_ENV=production "DATABASE_URL=$DATABASE_URL"
  "JWT_SECRET=$(openssl rand -base64 48)" "PORT=$PORT" "METRICS_PORT=$METRICS_PORT" HOST=127.0.0.1 MIGRATE_ON_START=false LOG_LEVEL=info
  "NODE_OPTIONS=$(npx --no-install tsx scripts/image-runtime.ts node-options)")

echo "== node dist/migrate.js"
(cd "$WORK/app" && "${RUN_ENV[@]}" node dist/migrate.js) || fail "node dist/migrate.js failed"

echo "== node dist/users-create.js (the first administrator)"
ADMIN_NAME="admin_$(openssl rand -hex 4)"
ADMIN_PASSWORD="smoke administrator password"
echo "$ADMIN_PASSWORD" | (cd "$WORK/app" && "${RUN_ENV[@]}" node dist/users-create.js --username "$ADMIN_NAME" --email "$ADMIN_NAME@example.com" --role admin) \
  || fail "node dist/users-create.js failed"

echo "== node dist/users-import.js (users of another app, with passlib's bcrypt and pbkdf2-sha256 hashes)"
IMPORTED_NAME="imported_$(openssl rand -hex 4)"
IMPORTED_PASSWORD="password from the old app"
IMPORTED_HASH="$(cd "$WORK/app" && node -e 'console.log(require("bcryptjs").hashSync(process.argv[1], 4))' "$IMPORTED_PASSWORD")" \
  || fail "could not make a bcrypt hash with the runtime's bcryptjs"
# The second user's hash is passlib's published pbkdf2-sha256 vector for the password "password".
PASSLIB_NAME="passlib_$(openssl rand -hex 4)"
printf 'username,email,password_hash\n%s,%s@example.com,%s\n%s,%s@example.com,%s\n' \
  "$IMPORTED_NAME" "$IMPORTED_NAME" "$IMPORTED_HASH" \
  "$PASSLIB_NAME" "$PASSLIB_NAME" '$pbkdf2-sha256$1212$4vjV83LKPjQzk31VI4E0Vw$hsYF68OiOUPdDZ1Fg.fJPeq1h/gXXY7acBp9/6c.tmQ' >"$WORK/users.csv"
IMPORT_OUTPUT="$(cd "$WORK/app" && "${RUN_ENV[@]}" node dist/users-import.js "$WORK/users.csv" 2>&1)" || fail "node dist/users-import.js failed: $IMPORT_OUTPUT"
[ "$IMPORT_OUTPUT" = "imported 2, skipped 0" ] || fail "node dist/users-import.js printed '$IMPORT_OUTPUT', expected 'imported 2, skipped 0'"
echo "$IMPORT_OUTPUT"

# The node flags of the image's CMD (["node", ...flags, "dist/server.js"]).
FLAGS_LINE="$(npx --no-install tsx scripts/image-runtime.ts flags)" || fail "Dockerfile: no exec-form CMD [\"node\", ..., script]"
read -r -a NODE_FLAGS <<<"$FLAGS_LINE"
echo "== node ${NODE_FLAGS[*]} dist/server.js on $BASE"
(cd "$WORK/app" && exec "${RUN_ENV[@]}" node "${NODE_FLAGS[@]}" dist/server.js) >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 60); do
  if curl -fsS -o /dev/null --max-time 2 "$BASE/health/ready" 2>/dev/null; then ready=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited before it was ready"
  sleep 0.5
done
[ "$ready" = 1 ] || fail "/health/ready did not answer 200 within 30 s"
echo "/health/ready: 200"
# The body is read whole before grep: `curl | grep -q` fails under pipefail when grep stops early (curl exit 23).
METRICS_BODY="$(curl -fsS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" || true)"
grep -q '^http_request_duration_seconds' <<<"$METRICS_BODY" \
  || fail "GET /metrics on METRICS_PORT did not answer Prometheus text"
[ "$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$BASE/metrics")" = 404 ] || fail "/metrics answered on the public port"
echo "GET /metrics: on METRICS_PORT only"

# expect STATUS BODY_FILE curl-args...: runs curl, checks the status code.
expect() {
  local want="$1" out="$2"; shift 2
  local got
  got="$(curl -sS --max-time 10 -o "$out" -w '%{http_code}' "$@")" || fail "curl $* failed"
  [ "$got" = "$want" ] || fail "$* answered $got, expected $want: $(cat "$out")"
}
USERNAME="smoke_$(openssl rand -hex 4)"
PASSWORD="correct horse battery staple"
expect 201 "$WORK/register.json" -X POST "$BASE/auth/register" -H 'content-type: application/json' \
  -d "{\"username\":\"$USERNAME\",\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}"
echo "POST /auth/register: 201"
expect 200 "$WORK/token.json" -X POST "$BASE/auth/token" \
  --data-urlencode grant_type=password --data-urlencode "username=$USERNAME" --data-urlencode "password=$PASSWORD"
TOKEN="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).access_token ?? "")' "$WORK/token.json")"
[ -n "$TOKEN" ] || fail "the token answer has no access_token: $(cat "$WORK/token.json")"
echo "POST /auth/token: 200"
expect 200 "$WORK/me.json" "$BASE/users/me" -H "authorization: Bearer $TOKEN"
ME="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).username)' "$WORK/me.json")"
[ "$ME" = "$USERNAME" ] || fail "/users/me returned username '$ME', expected '$USERNAME'"
echo "GET /users/me: 200 $ME"
expect 401 "$WORK/anonymous.json" "$BASE/users/me"
echo "GET /users/me without a token: 401"
expect 403 "$WORK/forbidden.json" "$BASE/admin/users" -H "authorization: Bearer $TOKEN"
echo "GET /admin/users as a plain user: 403"
expect 200 "$WORK/admin-token.json" -X POST "$BASE/auth/token" --data-urlencode "username=$ADMIN_NAME" --data-urlencode "password=$ADMIN_PASSWORD"
ADMIN_TOKEN="$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).access_token ?? "")' "$WORK/admin-token.json")"
expect 200 "$WORK/admin-users.json" "$BASE/admin/users?q=$USERNAME" -H "authorization: Bearer $ADMIN_TOKEN"
grep -q "\"username\":\"$USERNAME\"" "$WORK/admin-users.json" || fail "GET /admin/users?q= did not list $USERNAME: $(cat "$WORK/admin-users.json")"
echo "GET /admin/users as the administrator the CLI created: 200"
expect 401 "$WORK/imported-wrong.json" -X POST "$BASE/auth/token" --data-urlencode "username=$IMPORTED_NAME" --data-urlencode "password=password"
expect 200 "$WORK/imported-token.json" -X POST "$BASE/auth/token" --data-urlencode "username=$IMPORTED_NAME" --data-urlencode "password=$IMPORTED_PASSWORD"
expect 200 "$WORK/passlib-token.json" -X POST "$BASE/auth/token" --data-urlencode "username=$PASSLIB_NAME" --data-urlencode "password=password"
# The first successful login replaced the imported hash with argon2id.
REHASHED="$(cd "$WORK/app" && SMOKE_URL="$DATABASE_URL" SMOKE_USER="$IMPORTED_NAME" node --input-type=module -e '
  const { default: postgres } = await import("postgres")
  const sql = postgres(process.env.SMOKE_URL, { max: 1, onnotice: () => {}, connect_timeout: 10 })
  try {
    const [row] = await sql`select password_hash from users where username = ${process.env.SMOKE_USER}`
    console.log(row?.password_hash.split("$")[1])
  } finally { await sql.end({ timeout: 5 }) }
')"
[ "$REHASHED" = argon2id ] || fail "the imported user's hash is '$REHASHED' after a login, expected argon2id"
echo "POST /auth/token as the users node dist/users-import.js imported (bcrypt, pbkdf2-sha256): 200 with the old password, 401 without; rehashed to argon2id"

echo "== SIGTERM"
kill -TERM "$SERVER_PID"
exited=0
for _ in $(seq 1 150); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then exited=1; break; fi
  sleep 0.1
done
[ "$exited" = 1 ] || fail "the server was still running 15 s after SIGTERM"
set +e
wait "$SERVER_PID"
status=$?
set -e
SERVER_PID=""
[ "$status" = 0 ] || fail "the server exited with status $status after SIGTERM, expected 0"
echo "exited 0 after SIGTERM"
RESULT=PASS
