import type { FastifyServerOptions } from 'fastify'
import type { Config } from './config.js'

/** Pino options: no header, body or query string is ever written. */
export function loggerOptions (config: Pick<Config, 'LOG_LEVEL'>): Exclude<FastifyServerOptions['logger'], boolean | undefined> {
  return {
    level: config.LOG_LEVEL,
    // Belt and braces: nothing here logs headers or bodies, but a future log call might.
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'headers.authorization', '*.password', 'password', '*.access_token', 'access_token', '*.token'],
      censor: '[REDACTED]'
    },
    serializers: {
      req: (req: { method: string, url: string, ip?: string, id?: string }) => ({
        method: req.method,
        // The query string is dropped whole: a name-based filter is beaten by encodings (access%5Ftoken=...).
        url: req.url.includes('?') ? req.url.slice(0, req.url.indexOf('?')) + '?[REDACTED]' : req.url,
        remoteAddress: req.ip
      })
    }
  }
}
