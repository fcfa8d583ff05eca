import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Problems } from '../errors.js'

/** A port that cannot be listened on, said in plain words with the setting to change. */
export class ListenError extends Error {
  constructor (message: string, readonly code: string) {
    super(message)
    this.name = 'ListenError'
  }
}

/** The ListenError for a failed listen (EADDRINUSE and the like), or undefined for any other error. */
export function listenError (error: unknown, host: string, port: number, setting = 'PORT'): ListenError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  switch (code) {
    case 'EADDRINUSE': return new ListenError(`Port ${port} on ${host} is in use: set ${setting} to a free port (or stop the process using it)`, code)
    case 'EACCES': return new ListenError(`Port ${port} on ${host} needs privileges this process lacks: set ${setting} to 1024 or above`, code)
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND': return new ListenError(`HOST=${host} is not an address of this machine: set HOST (0.0.0.0 listens on every interface)`, code)
    default: return undefined
  }
}

/** Listening on HOST:PORT while the service starts. */
export interface BootServer {
  /** The port taken (PORT, or the one the system chose for PORT=0): the service listens on it next. */
  port: number
  /** Stops listening and drops every connection, kept-alive ones included. */
  close: () => Promise<void>
}

const STARTING = Problems.starting()

function answer (request: IncomingMessage, response: ServerResponse): void {
  const path = (request.url ?? '/').split('?')[0]
  const live = path === '/health/live' && (request.method === 'GET' || request.method === 'HEAD')
  // Readiness, and everything else: not yet.
  const [status, type, headers, body] = live
    ? [200, 'application/json', {}, { status: 'ok' }]
    : [STARTING.status, 'application/problem+json', STARTING.headers, STARTING.toBody()]
  const payload = Buffer.from(JSON.stringify(body))
  // Every connection ends with its answer, so that nothing is left open on the port when the service takes it over.
  response.writeHead(status, { ...headers, 'content-type': `${type}; charset=utf-8`, 'content-length': payload.length, connection: 'close' })
  response.end(request.method === 'HEAD' ? undefined : payload)
}

/**
 * Takes HOST:PORT first, before the database is opened: a second start on a busy port stops here (ListenError) and
 * never touches the data. Until the service listens, liveness answers 200 and readiness (like any other path) 503.
 */
export async function startBootServer (host: string, port: number): Promise<BootServer> {
  const server = createServer(answer)
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => { reject(listenError(error, host, port) ?? error) })
    server.listen({ host, port }, resolve)
  })
  let closed: Promise<void> | undefined
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      closed ??= new Promise<void>(resolve => {
        server.close(() => { resolve() })
        server.closeAllConnections()
      })
      await closed
    }
  }
}
