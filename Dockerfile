# syntax=docker/dockerfile:1
# Build:   docker build -t auth-service .
# Run:     docker run -p 3000:3000 -e DATABASE_URL=postgres://... -v "$PWD/signing-key.pem:/run/secrets/key:ro" \
#            -e JWT_PRIVATE_KEY_FILE=/run/secrets/key auth-service
#          (production by default: a signing key, JWT_PRIVATE_KEY[_FILE] or JWT_SECRET, and DATABASE_URL are required;
#          with -e NODE_ENV=development and no key, an Ed25519 key is generated into DATA_DIR, /app/data: mount a
#          volume there to keep it, as docker-compose.yml does)
# Migrate: docker run --rm -e DATABASE_URL=postgres://... auth-service node dist/migrate.js
#          (a separate step before a rollout, no key needed; then run the instances with MIGRATE_ON_START=false)
# Admin:   echo "$PASSWORD" | docker run --rm -i -e DATABASE_URL=postgres://... auth-service node dist/users-create.js --username admin --email admin@example.com --role admin
#          (the first administrator; or ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD_FILE at start)
# Import:  docker run --rm -i -v "$PWD:/in" -e DATABASE_URL=postgres://... auth-service node dist/users-import.js /in/users.csv
#          (users of another app with their bcrypt, pbkdf2-sha256 or argon2 hashes: docs/import.md)
# .ci/prod-smoke.sh runs these same steps without Docker.

# Compiles src/ to dist/ with the full (dev) dependencies.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

# The runtime dependencies only: no TypeScript, tsx, tap or drizzle-kit.
FROM node:22-bookworm-slim AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Runtime: compiled JavaScript, production node_modules, the SQL migrations; root-owned files, run as `node`.
FROM node:22-bookworm-slim
# HOST: outside production the service binds 127.0.0.1 by default, which nothing outside the container reaches.
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 DATA_DIR=/app/data
# A 4 MB young-generation semi-space: keeps the process under 200 MB RSS at full load, and measured no slower
# (npm run bench; see docs/performance.md). The benchmark starts the service with the same option.
ENV NODE_OPTIONS=--max-semi-space-size=4
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# package.json: "type": "module" for dist/, and the version the OpenAPI document reports.
COPY package.json ./
COPY migrations ./migrations
# The one directory `node` may write (a generated signing key): a named volume mounted here starts with its owner.
RUN mkdir /app/data && chown node:node /app/data
USER node
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node is PID 1 and handles SIGTERM itself (close-with-grace, SHUTDOWN_GRACE_MS): exec form, no shell in between.
# Give the container a stop timeout above SHUTDOWN_GRACE_MS (docker stop -t, stop_grace_period).
# V8 flags (not allowed in NODE_OPTIONS, so here), measured with npm run bench and side by side (docs/performance.md):
# --no-memory-reducer: after a few idle seconds V8's memory reducer shrinks the heap, and under load afterwards the
#   service stayed 20-30% slower per request (twice the scavenges); with it off it is as fast after a quiet spell
#   as when fresh.
# --heap-growing-percent=50: without the reducer the old generation grew to about 3 times the live heap between full
#   collections (peak RSS past 200 MB in a long benchmark); growing by half keeps the peak near 160 MB.
# The benchmark and .ci/prod-smoke.sh read these flags from this line.
CMD ["node", "--no-memory-reducer", "--heap-growing-percent=50", "dist/server.js"]
