import { setTimeout as sleep } from 'node:timers/promises'

/** DATABASE_URL did not accept a connection within DATABASE_START_TIMEOUT_SECONDS: the message names it, password masked. */
export class DatabaseUnreachableError extends Error {
  constructor (url: string, seconds: number, readonly reason: string) {
    super(`Could not connect to DATABASE_URL=${maskUrl(url)} within ${seconds} s (DATABASE_START_TIMEOUT_SECONDS): ${reason}. Check that the server runs and that DATABASE_URL points at it`)
    this.name = 'DatabaseUnreachableError'
  }
}

export interface WaitLogger {
  warn: (fields: Record<string, unknown>, message: string) => void
}

export interface WaitOptions {
  timeoutSeconds: number
  log: WaitLogger
}

const FIRST_DELAY_MS = 250
const MAX_DELAY_MS = 5000
const CONNECT_TIMEOUT_SECONDS = 5

/** The URL with its password replaced by ***: postgres://app:***@db:5432/auth. */
export function maskUrl (url: string): string {
  // Up to the last '@': a password with an unescaped '@' is masked whole rather than cut in two.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:).*@/i, '$1***@')
}

function passwordOf (url: string): string | undefined {
  const match = /^[a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:(.*)@/i.exec(url)
  return match?.[1] === undefined || match[1] === '' ? undefined : match[1]
}

/** Why a try failed (error code and message), with the password and the URL taken out wherever they appear. */
export function failureReason (error: unknown, url: string): string {
  const { code, message } = error as { code?: unknown, message?: unknown }
  let reason = [typeof code === 'string' ? code : undefined, typeof message === 'string' ? message : String(error)]
    .filter(part => part !== undefined && part !== '').join(' ')
  const password = passwordOf(url)
  reason = reason.replaceAll(url, maskUrl(url))
  if (password !== undefined) {
    for (const form of new Set([password, safeDecode(password)])) reason = reason.replaceAll(form, '***')
  }
  return reason
}

function safeDecode (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/**
 * Waits until DATABASE_URL accepts a connection and answers `select 1`: a database that starts beside the service
 * (docker-compose, a pod's sidecar) is waited for instead of ending the start with a stack trace. Tries with backoff
 * (0.25 s doubling to 5 s) until `timeoutSeconds` have passed (0: one try), each failure a warning; then throws
 * DatabaseUnreachableError. Each try is a client of its own with one connection, ended after the try.
 */
export async function waitForDatabase (url: string, options: WaitOptions): Promise<void> {
  const { default: postgres } = await import('postgres')
  const deadline = performance.now() + options.timeoutSeconds * 1000
  let delay = FIRST_DELAY_MS
  for (let attempt = 1; ; attempt++) {
    const remainingSeconds = (deadline - performance.now()) / 1000
    const client = postgres(url, {
      max: 1,
      onnotice: () => {},
      // A black-holed address must not hold a try much past the deadline.
      connect_timeout: options.timeoutSeconds === 0 ? CONNECT_TIMEOUT_SECONDS : Math.max(1, Math.min(CONNECT_TIMEOUT_SECONDS, Math.ceil(remainingSeconds))),
      connection: { application_name: 'auth-service-start' }
    })
    let reason: string
    try {
      await client`select 1`
      return
    } catch (error) {
      reason = failureReason(error, url)
    } finally {
      await client.end({ timeout: 1 }).catch(() => {})
    }
    const remainingMs = deadline - performance.now()
    if (remainingMs <= 0) throw new DatabaseUnreachableError(url, options.timeoutSeconds, reason)
    const wait = Math.min(delay, remainingMs)
    options.log.warn({ attempt, reason, retry_in_ms: Math.round(wait) }, 'database not reachable yet (DATABASE_URL); retrying')
    await sleep(wait)
    delay = Math.min(delay * 2, MAX_DELAY_MS)
  }
}
