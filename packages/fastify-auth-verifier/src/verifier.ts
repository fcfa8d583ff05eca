import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import { isVerifiedClaims, type VerifiedClaims } from './claims.js'
import { readEventStream, type ServerSentEvent } from './event-stream.js'
import { kidOf, verifiersOf, type Verify } from './keys.js'
import { Problems, type Problem } from './problems.js'

export interface VerifierOptions {
  /** The auth service's base URL: its metadata is at `${authUrl}/.well-known/oauth-authorization-server`. */
  authUrl: string
  /** The `aud` every accepted token must carry (the service's JWT_AUDIENCE). */
  audience: string
  /** The `iss` every accepted token must carry; default: the metadata's `issuer`. */
  issuer?: string
  /** A service client of the auth service holding the scope `sessions:ended`: the feed of ended sessions needs it. */
  clientId: string
  clientSecret: string
  /** When the feed has been silent longer than staleAfterMs: accept tokens anyway (true) or answer 503 (false). */
  failOpen?: boolean
  /** How long the feed may be silent (no event, no heartbeat) before ended sessions count as unknown. */
  staleAfterMs?: number
  /** An unknown kid refetches the JWKS at most once per this interval. */
  jwksRefetchIntervalMs?: number
  /** Reach every endpoint at authUrl's origin, keeping the metadata's paths (authUrl is internal, PUBLIC_URL public). */
  sameOriginEndpoints?: boolean
  /** Replaces the global fetch for the metadata, JWKS and token requests (the event stream is a node:http request). */
  fetch?: typeof globalThis.fetch
}

export type Outcome = { claims: VerifiedClaims, problem?: undefined } | { problem: Problem, claims?: undefined }

export interface VerifierStatus {
  /** Keys of the JWKS the plugin verifies with. */
  keys: number
  /** The feed has delivered its `synced` event at least once. */
  synced: boolean
  /** The feed was heard from within staleAfterMs: ended sessions are known. */
  fresh: boolean
  /** Sessions ended lately, refused until their tokens have expired. */
  endedSessions: number
}

interface Metadata {
  issuer: string
  jwksUri: string
  tokenEndpoint: string
  streamEndpoint: string
}

interface Connection {
  controller: AbortController
  startedAt: number
  lastDataAt: number
  synced: boolean
}

const BEARER = /^Bearer +(\S*) *$/i
// Characters of an Authorization header the verified-token cache is keyed by: its end, inside the signature.
const VERIFIED_KEY_LENGTH = 32
const VERIFIED_CACHE_SIZE = 10_000
const REQUEST_TIMEOUT_MS = 5000
// Keys are refreshed this often even when no unknown kid asks (the JWKS says max-age=300): a removed key stops verifying.
const KEYS_MAX_AGE_MS = 300_000
const MAX_BACKOFF_MS = 10_000
// The service lists ended sessions for ACCESS_TOKEN_TTL plus a minute; a token lifetime the plugin has not seen yet.
const DEFAULT_LIFETIME_SECONDS = 900
const RETENTION_SKEW_MS = 60_000
const FEED_SCOPE = 'sessions:ended'

/**
 * The event stream's request, on a connection of its own (no agent, so no keep-alive pool): global fetch's pool was
 * seen to open a spare connection when a stream was aborted, which then held the service's shutdown open.
 */
async function openStream (url: string, headers: Record<string, string>, signal: AbortSignal): Promise<IncomingMessage> {
  const target = new URL(url)
  const request = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { headers, signal, agent: false })
  return await new Promise((resolve, reject) => {
    request.once('response', resolve).once('error', reject).end()
  })
}

class HttpError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

/**
 * Verifies auth-service access tokens without a call per request: keys from the JWKS, and an in-memory set of
 * ended sessions fed by the service's event stream.
 */
export class AuthVerifier {
  private readonly fetch: typeof globalThis.fetch
  private readonly failOpen: boolean
  private readonly staleAfterMs: number
  private readonly jwksRefetchIntervalMs: number

  private metadata: Metadata | undefined
  private verifiers = new Map<string, Verify>()
  private keysLoaded = false
  private keysAttemptAt = Number.NEGATIVE_INFINITY
  private keysFetch: Promise<void> | undefined
  // Authorization headers whose token passed every check, as the service keeps them (src/services/tokens.ts).
  private readonly verified = new Map<string, { authorization: string, claims: VerifiedClaims }>()

  // Session id -> when it ended (epoch ms).
  private readonly ended = new Map<string, number>()
  private lifetimeSeconds = DEFAULT_LIFETIME_SECONDS
  private lastHeardAt = Number.NEGATIVE_INFINITY
  private everSynced = false
  private connection: Connection | undefined
  private cursor: string | undefined
  private retryMs = 1000

  private token: { value: string, renewAt: number } | undefined
  private tokenFetch: Promise<string> | undefined

  private readonly closing = new AbortController()
  private tick: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private readonly synced: Promise<void>
  private resolveSynced!: () => void

  constructor (private readonly options: VerifierOptions, private readonly log: FastifyBaseLogger) {
    for (const name of ['authUrl', 'audience', 'clientId', 'clientSecret'] as const) {
      if (typeof options[name] !== 'string' || options[name] === '') throw new Error(`@auth-service/fastify-verifier: the option ${name} is required`)
    }
    if (!URL.canParse(options.authUrl)) {
      throw new Error(`@auth-service/fastify-verifier: authUrl is not a URL: ${options.authUrl}`)
    }
    this.fetch = options.fetch ?? globalThis.fetch
    this.failOpen = options.failOpen ?? false
    this.staleAfterMs = options.staleAfterMs ?? 15_000
    this.jwksRefetchIntervalMs = options.jwksRefetchIntervalMs ?? 30_000
    this.synced = new Promise(resolve => { this.resolveSynced = resolve })
    this.synced.catch(() => {})
  }

  /** Starts fetching the metadata, the keys and the feed in the background. */
  start (): void {
    if (this.running !== undefined) return
    this.tick = setInterval(() => { this.onTick() }, 1000)
    this.tick.unref()
    this.running = this.run()
  }

  /** Stops the feed, the timers and every request under way. */
  async close (): Promise<void> {
    this.closing.abort()
    if (this.tick !== undefined) clearInterval(this.tick)
    await this.running
  }

  /** Resolves once the feed has delivered everything up to now (its first `synced`), or rejects after timeoutMs. */
  async whenSynced (timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`the ended-session feed did not sync within ${timeoutMs} ms`)) }, timeoutMs)
    })
    try {
      await Promise.race([this.synced, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  status (): VerifierStatus {
    return { keys: this.verifiers.size, synced: this.everSynced, fresh: this.fresh, endedSessions: this.ended.size }
  }

  private get fresh (): boolean {
    return Date.now() - this.lastHeardAt <= this.staleAfterMs
  }

  /** The claims of the bearer token in an Authorization header, or the problem to answer. */
  check (authorization: string | undefined): Outcome | Promise<Outcome> {
    if (authorization === undefined) return { problem: Problems.notAuthenticated() }
    const cacheKey = authorization.slice(-VERIFIED_KEY_LENGTH)
    const known = this.verified.get(cacheKey)
    if (known !== undefined && known.authorization === authorization) {
      if (known.claims.exp * 1000 > Date.now()) return this.decide(known.claims)
      this.verified.delete(cacheKey)
      return { problem: Problems.tokenExpired() }
    }
    const match = BEARER.exec(authorization)
    if (match === null) return { problem: Problems.notAuthenticated() }
    const token = match[1]
    // Chosen by the kid before any signature work; a header naming keys elsewhere is refused (RFC 8725 3.10).
    const kid = kidOf(token)
    if (kid === undefined) return { problem: Problems.invalidToken() }
    const verify = this.verifiers.get(kid)
    if (verify !== undefined) return this.verifyWith(verify, token, authorization, cacheKey)
    // Without any key yet (the service was never reached), no token can be judged: not the caller's fault.
    if (!this.keysLoaded) return { problem: Problems.unavailable() }
    // A kid we do not know: perhaps a rotation. One refetch per interval, whatever the number of such tokens.
    const refetch = this.refreshKeys()
    if (refetch === undefined) return { problem: Problems.invalidToken() }
    return refetch.then(() => {
      const after = this.verifiers.get(kid)
      return after === undefined ? { problem: Problems.invalidToken() } : this.verifyWith(after, token, authorization, cacheKey)
    })
  }

  private verifyWith (verify: Verify, token: string, authorization: string, cacheKey: string): Outcome {
    let claims: unknown
    try {
      claims = verify(token)
    } catch (error) {
      // fast-jwt throws for every way a token can be bad, some of them as plain TypeErrors: all are a 401.
      return { problem: (error as { code?: string }).code === 'FAST_JWT_EXPIRED' ? Problems.tokenExpired() : Problems.invalidToken() }
    }
    if (!isVerifiedClaims(claims)) return { problem: Problems.invalidToken() }
    this.noteLifetime(claims.exp - claims.iat)
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.delete(this.verified.keys().next().value as string)
    this.verified.set(cacheKey, { authorization, claims })
    return this.decide(claims)
  }

  private decide (claims: VerifiedClaims): Outcome {
    if (this.ended.has(claims.sid)) return { problem: Problems.sessionEnded() }
    // The set may miss sessions ended while the feed was silent.
    if (!this.failOpen && !this.fresh) return { problem: Problems.unavailable() }
    return { claims }
  }

  /** Ended sessions are kept until every token of theirs has expired: the longest lifetime seen, plus a minute. */
  private noteLifetime (seconds: number): void {
    if (seconds > this.lifetimeSeconds && seconds <= 86_400) this.lifetimeSeconds = seconds
  }

  private get retainMs (): number {
    return this.lifetimeSeconds * 1000 + RETENTION_SKEW_MS
  }

  private addEnded (id: string, endedAt: number): void {
    if (endedAt + this.retainMs > Date.now()) this.ended.set(id, endedAt)
  }

  private onTick (): void {
    const now = Date.now()
    const retainMs = this.retainMs
    for (const [id, endedAt] of this.ended) if (endedAt + retainMs <= now) this.ended.delete(id)
    // A stream that stays open but says nothing (a frozen service, a half-open connection): start again.
    const connection = this.connection
    if (connection !== undefined && now - Math.max(connection.startedAt, connection.lastDataAt) > this.staleAfterMs) {
      connection.controller.abort()
    }
    if (this.token !== undefined && now >= this.token.renewAt && this.tokenFetch === undefined) {
      this.renewToken().catch((error: Error) => { this.log.warn({ err: { message: error.message } }, 'auth verifier: could not renew the client token') })
    }
    if (this.keysLoaded && performance.now() - this.keysAttemptAt > KEYS_MAX_AGE_MS) this.refreshKeys()?.catch(() => {})
  }

  private async run (): Promise<void> {
    let failures = 0
    while (!this.closing.signal.aborted && !this.keysLoaded) {
      try {
        this.metadata ??= await this.loadMetadata()
        await this.loadKeys()
      } catch (error) {
        if (this.closing.signal.aborted) return
        failures++
        this.log.warn({ err: { message: (error as Error).message } }, 'auth verifier: cannot reach the auth service yet')
        await this.pause(this.backoff(failures))
      }
    }
    failures = 0
    while (!this.closing.signal.aborted) {
      let synced = false
      try {
        synced = await this.follow()
        if (!this.closing.signal.aborted) this.log.warn('auth verifier: the ended-session feed closed; reconnecting')
      } catch (error) {
        if (this.closing.signal.aborted) return
        this.log.warn({ err: { message: (error as Error).message } }, 'auth verifier: the ended-session feed failed; reconnecting')
      }
      failures = synced ? 1 : failures + 1
      await this.pause(this.backoff(failures))
    }
  }

  private backoff (failures: number): number {
    const ms = Math.min(this.retryMs * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS)
    return ms * (0.8 + Math.random() * 0.4)
  }

  private async pause (ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.closing.signal })
    } catch {}
  }

  private signal (): AbortSignal {
    return AbortSignal.any([this.closing.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)])
  }

  private async getJson (url: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
    const res = await this.fetch(url, { ...init, headers: { accept: 'application/json', ...init.headers }, signal: this.signal() })
    let body: unknown
    try {
      body = await res.json()
    } catch {
      body = undefined
    }
    if (!res.ok) {
      const code = typeof (body as { error?: unknown } | undefined)?.error === 'string' ? ` ${(body as { error: string }).error}` : ''
      throw new HttpError(res.status, `${new URL(url).pathname} answered ${res.status}${code}`)
    }
    if (body === null || typeof body !== 'object') throw new Error(`${new URL(url).pathname} answered no JSON object`)
    return body as Record<string, unknown>
  }

  private async loadMetadata (): Promise<Metadata> {
    const base = this.options.authUrl.replace(/\/+$/, '')
    const document = await this.getJson(`${base}/.well-known/oauth-authorization-server`)
    const endpoint = (name: string): string => {
      const value = document[name]
      if (typeof value !== 'string') throw new Error(`the metadata has no ${name}`)
      const url = new URL(value)
      if (this.options.sameOriginEndpoints === true) {
        const origin = new URL(base)
        url.protocol = origin.protocol
        url.host = origin.host
      }
      return url.toString()
    }
    const issuer = this.options.issuer ?? document.issuer
    if (typeof issuer !== 'string' || issuer === '') throw new Error('the metadata has no issuer')
    return {
      issuer,
      jwksUri: endpoint('jwks_uri'),
      tokenEndpoint: endpoint('token_endpoint'),
      streamEndpoint: endpoint('ended_sessions_stream_endpoint')
    }
  }

  private async loadKeys (): Promise<void> {
    const metadata = this.metadata
    if (metadata === undefined) throw new Error('no metadata yet')
    this.keysAttemptAt = performance.now()
    const verifiers = verifiersOf(await this.getJson(metadata.jwksUri), { issuer: metadata.issuer, audience: this.options.audience })
    if (verifiers.size === 0) throw new Error('the JWKS holds no usable key (an HS256 service publishes none: the plugin needs RS256, ES256 or EdDSA)')
    const removed = [...this.verifiers.keys()].some(kid => !verifiers.has(kid))
    this.verifiers = verifiers
    this.keysLoaded = true
    // A key gone from the JWKS verifies nothing more, remembered tokens included.
    if (removed) this.verified.clear()
  }

  private refreshKeys (): Promise<void> | undefined {
    if (this.keysFetch !== undefined) return this.keysFetch
    if (this.metadata === undefined || performance.now() - this.keysAttemptAt < this.jwksRefetchIntervalMs) return undefined
    this.keysFetch = this.loadKeys()
      .catch((error: Error) => { this.log.warn({ err: { message: error.message } }, 'auth verifier: could not refetch the JWKS') })
      .finally(() => { this.keysFetch = undefined })
    return this.keysFetch
  }

  private async accessToken (): Promise<string> {
    if (this.token !== undefined && Date.now() < this.token.renewAt) return this.token.value
    return await this.renewToken()
  }

  /** A client_credentials token for the feed (RFC 6749 section 4.4, HTTP Basic as section 2.3.1 has it). */
  private async renewToken (): Promise<string> {
    this.tokenFetch ??= (async () => {
      const metadata = this.metadata as Metadata
      const basic = Buffer.from(`${encodeURIComponent(this.options.clientId)}:${encodeURIComponent(this.options.clientSecret)}`).toString('base64')
      const body = await this.getJson(metadata.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: FEED_SCOPE }).toString()
      })
      const { access_token: value, expires_in: expiresIn } = body
      if (typeof value !== 'string' || typeof expiresIn !== 'number' || expiresIn <= 0) throw new Error('the token endpoint answered no access token')
      this.noteLifetime(expiresIn)
      // Renewed once most of its lifetime has passed: a reconnect never waits for a token, nor uses an expired one.
      this.token = { value, renewAt: Date.now() + Math.max(expiresIn * 500, expiresIn * 1000 - 60_000) }
      return value
    })().finally(() => { this.tokenFetch = undefined })
    return await this.tokenFetch
  }

  /** Follows the feed until it ends; answers whether it got as far as `synced`. */
  private async follow (): Promise<boolean> {
    const token = await this.accessToken()
    const now = Date.now()
    const connection: Connection = { controller: new AbortController(), startedAt: now, lastDataAt: now, synced: false }
    this.connection = connection
    let res: IncomingMessage | undefined
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream', authorization: `Bearer ${token}` }
      if (this.cursor !== undefined) headers['last-event-id'] = this.cursor
      res = await openStream((this.metadata as Metadata).streamEndpoint, headers, AbortSignal.any([this.closing.signal, connection.controller.signal]))
      if (res.statusCode === 401) this.token = undefined
      if (res.statusCode !== 200) {
        throw new HttpError(res.statusCode ?? 0, `the ended-session feed answered ${res.statusCode ?? 'nothing'}`)
      }
      if (!/^text\/event-stream/i.test(res.headers['content-type'] ?? '')) {
        throw new Error('the ended-session feed is not an event stream')
      }
      await readEventStream(res, {
        onEvent: (event) => { this.onFeedEvent(connection, event) },
        onActivity: () => {
          connection.lastDataAt = Date.now()
          if (connection.synced) this.lastHeardAt = connection.lastDataAt
        },
        onRetry: (ms) => { this.retryMs = Math.min(Math.max(ms, 100), MAX_BACKOFF_MS) }
      }, this.cursor)
    } catch (error) {
      // Aborted by the watchdog (silence): a reconnect, not a failure to report as such.
      if (!connection.controller.signal.aborted || this.closing.signal.aborted) throw error
    } finally {
      res?.destroy()
      if (this.connection === connection) this.connection = undefined
    }
    return connection.synced
  }

  private onFeedEvent (connection: Connection, event: ServerSentEvent): void {
    if (event.id !== undefined) this.cursor = event.id
    if (event.event === 'ended') {
      let data: { ids?: unknown, ended_at?: unknown }
      try {
        data = JSON.parse(event.data)
      } catch {
        return
      }
      const endedAt = typeof data.ended_at === 'string' ? Date.parse(data.ended_at) : Number.NaN
      const ids = Array.isArray(data.ids) ? data.ids : []
      for (const id of ids) if (typeof id === 'string') this.addEnded(id, Number.isNaN(endedAt) ? Date.now() : endedAt)
    } else if (event.event === 'synced') {
      connection.synced = true
      this.lastHeardAt = Date.now()
      if (!this.everSynced) {
        this.everSynced = true
        this.log.info({ endedSessions: this.ended.size }, 'auth verifier: ended-session feed synced')
        this.resolveSynced()
      }
    }
  }
}
