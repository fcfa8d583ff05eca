import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { Problems } from '../errors.js'
import { requireAuthentication } from '../plugins/auth.js'
import { problemResponses } from '../schemas/problem.js'
import { EndedListSchema, EndedSinceQuerySchema, EndedStreamHeadersSchema, STREAM_DESCRIPTION, STREAM_EXAMPLE, toEndedList } from '../schemas/sessions-feed.js'
import { batchNewEnds, parseCursor, toBatches, type EndedBatch, type EndedSince } from '../services/ended-feed.js'
import type { SERVICE_SCOPES } from '../services/scopes.js'

const FEED_SCOPE: (typeof SERVICE_SCOPES)[number] = 'sessions:ended'
const HEARTBEAT_MS = 5000
// An event's ids: some 20 KB of data, far below what an EventSource or a proxy buffers.
const IDS_PER_EVENT = 500
// A subscriber that does not read is dropped, before its buffer grows large or stale; it resumes with Last-Event-ID.
const MAX_BUFFERED_BYTES = 1024 * 1024
const MAX_STALL_MS = 15_000

const eventData = (batch: EndedBatch): string => JSON.stringify({ ids: batch.ids, ended_at: batch.endedAt.toISOString() })

/** One open stream: written to with backpressure bounded, its cursor the time of the newest end it was sent. */
class Subscriber {
  // Live ends that arrive while the replay is written, sent after it.
  private backlog: EndedBatch[] | undefined = []
  private stalledSince = 0

  constructor (private readonly raw: ServerResponse, readonly sid: string, readonly expiresAt: number, private cursor: number) {
    raw.on('drain', () => { this.stalledSince = 0 })
  }

  get open (): boolean {
    return !this.raw.destroyed && !this.raw.writableEnded
  }

  async replay (since: EndedSince): Promise<void> {
    this.write('retry: 1000\n\n')
    for (const batch of toBatches(since.ended, IDS_PER_EVENT)) {
      if (!this.open) return
      // The replay waits for a slow reader (bounded); live events do not.
      if (!this.write(this.event('ended', eventData(batch), batch.endedAt.getTime()))) await this.drained()
    }
    this.write(this.event('synced', '{}', since.cursor))
    const backlog = this.backlog ?? []
    this.backlog = undefined
    for (const batch of backlog) this.send(batch, eventData(batch))
  }

  send (batch: EndedBatch, data: string): void {
    if (this.backlog !== undefined) this.backlog.push(batch)
    else this.write(this.event('ended', data, batch.endedAt.getTime()))
  }

  ping (): void {
    // Not before the stream's headers: a write now would send default ones, and the handler's writeHead would throw.
    if (this.raw.headersSent) this.write(': ping\n\n')
  }

  /** Ends the stream; at once when the subscriber is not reading, so that a shutdown is not held up. */
  close (): void {
    if (this.raw.writableNeedDrain) this.raw.destroy()
    else this.raw.end()
  }

  private event (name: string, data: string, endedAt: number): string {
    this.cursor = Math.max(this.cursor, endedAt)
    return `id: ${this.cursor}\nevent: ${name}\ndata: ${data}\n\n`
  }

  private write (text: string): boolean {
    if (!this.open) return false
    if (this.raw.write(text)) return true
    if (this.stalledSince === 0) this.stalledSince = Date.now()
    if (this.raw.writableLength > MAX_BUFFERED_BYTES || Date.now() - this.stalledSince > MAX_STALL_MS) this.raw.destroy()
    return false
  }

  private async drained (): Promise<void> {
    if (!this.open) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.raw.off('drain', done).off('close', done)
        resolve()
      }
      const timer = setTimeout(() => { this.raw.destroy(); done() }, MAX_STALL_MS)
      this.raw.on('drain', done).on('close', done)
    })
  }
}

const sessionsFeedRoutes: FastifyPluginAsyncTypebox = async (app) => {
  requireAuthentication(app)
  const subscribers = new Set<Subscriber>()

  const stopBatches = batchNewEnds(app.endedSessions, (batch) => {
    if (subscribers.size === 0) return
    const endedIds = new Set(batch.ids)
    for (let i = 0; i < batch.ids.length; i += IDS_PER_EVENT) {
      const part = i === 0 && batch.ids.length <= IDS_PER_EVENT ? batch : { ids: batch.ids.slice(i, i + IDS_PER_EVENT), endedAt: batch.endedAt }
      const data = eventData(part)
      for (const subscriber of subscribers) subscriber.send(part, data)
    }
    // A subscriber whose own session (or client) just ended has been told so, and is heard no more.
    for (const subscriber of subscribers) if (endedIds.has(subscriber.sid)) subscriber.close()
  })
  const heartbeat = setInterval(() => {
    const now = Date.now()
    // An expired token ends its stream: the subscriber reconnects with a new one.
    for (const subscriber of subscribers) {
      if (subscriber.expiresAt <= now) subscriber.close()
      else subscriber.ping()
    }
  }, HEARTBEAT_MS).unref()
  // preClose: open streams would otherwise hold server.close() until their subscribers leave.
  app.addHook('preClose', (done) => {
    stopBatches()
    clearInterval(heartbeat)
    for (const subscriber of subscribers) subscriber.close()
    done()
  })

  app.get('/ended', {
    config: { scopes: [FEED_SCOPE] },
    schema: {
      tags: ['sessions'],
      summary: 'Sessions ended since a cursor, for services that verify tokens themselves',
      description: 'Every session that ended (and service client deleted) at or after `since`, less a few seconds of ' +
        'overlap, and within the access token lifetime plus a minute: older ends cannot matter, their tokens have ' +
        'expired. Without `since`, all of those. Hold the ids in a set and refuse tokens whose `sid` is in it.',
      operationId: 'listEndedSessions',
      querystring: EndedSinceQuerySchema,
      response: {
        200: EndedListSchema,
        ...problemResponses(400, 401, 403, 429, 500)
      }
    }
  }, async (request) => toEndedList(await app.endedFeed.since(parseCursor(request.query.since))))

  app.get('/ended/stream', {
    config: { scopes: [FEED_SCOPE] },
    schema: {
      tags: ['sessions'],
      summary: 'Sessions as they end, as Server-Sent Events resumable with Last-Event-ID',
      description: STREAM_DESCRIPTION,
      operationId: 'streamEndedSessions',
      querystring: EndedSinceQuerySchema,
      headers: EndedStreamHeadersSchema,
      response: {
        200: {
          description: 'An event stream that stays open',
          content: { 'text/event-stream': { schema: Type.String({ description: 'Server-Sent Events, as the operation describes' }), example: STREAM_EXAMPLE } }
        },
        ...problemResponses(400, 401, 403, 429, 500),
        503: {
          ...(problemResponses(503)[503] as object),
          description: 'Too many open streams on this instance (`feed_full`), or the database does not answer (`database_unavailable`); see Retry-After'
        }
      }
    }
  }, async (request, reply) => {
    if (subscribers.size >= app.config.SESSION_FEED_MAX_SUBSCRIBERS) throw Problems.feedFull()
    const since = parseCursor(request.headers['last-event-id']) ?? parseCursor(request.query.since)
    const subscriber = new Subscriber(reply.raw, request.user.sid, request.user.exp * 1000, since ?? 0)
    // Listed before the replay is read, so that an end learned meanwhile waits in its backlog instead of being lost.
    subscribers.add(subscriber)
    reply.raw.on('close', () => { subscribers.delete(subscriber) })
    let replay: EndedSince
    try {
      replay = await app.endedFeed.since(since)
    } catch (error) {
      subscribers.delete(subscriber)
      throw error
    }
    reply.hijack()
    if (!subscriber.open) return
    reply.raw.writeHead(200, {
      ...(reply.getHeaders() as OutgoingHttpHeaders),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // nginx would otherwise hold events back in its buffer.
      'x-accel-buffering': 'no'
    })
    await subscriber.replay(replay).catch(() => { reply.raw.destroy() })
  })
}

export default sessionsFeedRoutes
