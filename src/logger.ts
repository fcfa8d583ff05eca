import type { FastifyServerOptions } from 'fastify'
import { fileURLToPath } from 'node:url'
import type { Config } from './config.js'

/** pino-pretty's entry point, or undefined where it is not installed (the image has no development dependencies). */
function prettyPrinter (): string | undefined {
  try {
    return fileURLToPath(import.meta.resolve('pino-pretty'))
  } catch {
    return undefined
  }
}

/** Logs for a person: on a terminal, outside production, and when pino's pretty printer is installed. Else JSON lines. */
export function prettyLogs (config: Pick<Config, 'NODE_ENV'>, stdout: { isTTY?: boolean } = process.stdout): boolean {
  return stdout.isTTY === true && config.NODE_ENV !== 'production' && prettyPrinter() !== undefined
}

/** Pino options: no header, body or query string is ever written. `pretty`: through pino-pretty, redacted the same. */
export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>, { pretty = false }: { pretty?: boolean } = {}): Exclude<FastifyServerOptions['logger'], boolean | undefined> {
  const printer = pretty ? prettyPrinter() : undefined
  return {
    level: config.LOG_LEVEL,
    ...(printer !== undefined ? { transport: { target: printer, options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
    // Belt and braces: nothing here logs headers or bodies, but a future log call might.
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password', 'password', '*.access_token', 'access_token', '*.token'],
      censor: '[REDACTED]'
    },
    serializers: {
      err: serializeError,
      req: (req: { method: string, url: string, ip?: string, id?: string }) => ({
        method: req.method,
        // The query string is dropped whole: a name-based filter is beaten by encodings (access%5Ftoken=...).
        url: req.url.includes('?') ? req.url.slice(0, req.url.indexOf('?')) + '?[REDACTED]' : req.url,
        remoteAddress: req.ip
      })
    }
  }
}

// Properties of database errors that hold a query's parameters (a password hash, an email, a typed password).
const PARAMETER_KEYS = new Set(['params', 'parameters'])
const OMITTED = new Set(['message', 'stack', 'cause', ...PARAMETER_KEYS])

/**
 * Errors as pino's standard serializer writes them (type, message, stack, own fields, cause), except that a database
 * error never carries its parameters: drizzle's "Failed query: ...\nparams: ..." keeps the query and drops the rest,
 * in the message and in the stack's first line, and `params`/`parameters` fields are left out, at any depth of cause.
 */
export function serializeError (error: unknown, depth = 0): { type: string, message: string, stack: string, [key: string]: unknown } {
  // What is not an Error goes through as it is, as with pino's own serializer.
  if (!(error instanceof Error) || depth > 4) return error as { type: string, message: string, stack: string }
  const fields = error as unknown as Record<string, unknown>
  const drizzle = error.message.startsWith('Failed query: ') && typeof fields.query === 'string'
  const message = drizzle ? `Failed query: ${fields.query as string}` : error.message
  const frames = (error.stack ?? '').split('\n').filter(line => /^\s+at /.test(line))
  const out: { type: string, message: string, stack: string, [key: string]: unknown } = { type: error.constructor.name, message, stack: [`${error.name}: ${message}`, ...frames].join('\n') }
  for (const [key, value] of Object.entries(error)) if (!OMITTED.has(key)) out[key] = value
  if (error.cause !== undefined) out.cause = serializeError(error.cause, depth + 1)
  return out
}
