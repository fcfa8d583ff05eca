import { Type } from '@sinclair/typebox'
import { uuid } from './id.js'
import type { EndedSince } from '../services/ended-feed.js'

const cursor = (description: string) => Type.String({ pattern: '^[0-9]{1,15}$', 'x-error-message': 'must be a whole number of at most 15 digits', description, examples: ['1795428000250'] })

export const EndedSinceQuerySchema = Type.Object({
  since: Type.Optional(cursor('A cursor from an earlier answer (or an event id): the ends from about then on. Without it, every end that can still matter'))
})

export const EndedStreamHeadersSchema = Type.Object({
  'last-event-id': Type.Optional(Type.String({ description: 'The id of the last event received, sent by EventSource on reconnecting: wins over `since`; ignored when it is not a cursor' }))
})

const ENDED_EXAMPLE = {
  ended: [
    { id: '6a1f4d2b-3c5e-4f70-8a91-b2c3d4e5f607', ended_at: '2026-11-23T10:00:00.125Z' },
    { id: '0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41', ended_at: '2026-11-23T10:00:00.250Z' }
  ],
  cursor: '1795428000250'
}

export const EndedListSchema = Type.Object({
  ended: Type.Array(Type.Object({
    id: uuid(),
    ended_at: Type.String({ format: 'date-time' })
  }, { additionalProperties: false }), { description: 'Oldest first; an end may repeat one already sent (the overlap before the cursor)' }),
  cursor: cursor('Pass as `since` next time (or as Last-Event-ID): opaque, do not compute with it')
}, {
  title: 'EndedSessions',
  description: 'Sessions ended and service clients deleted within the access token lifetime (their tokens may still be unexpired)',
  additionalProperties: false,
  examples: [ENDED_EXAMPLE]
})

export const toEndedList = (result: EndedSince): { ended: Array<{ id: string, ended_at: string }>, cursor: string } => ({
  ended: result.ended.map(e => ({ id: e.id, ended_at: e.endedAt.toISOString() })),
  cursor: String(result.cursor)
})

export const STREAM_EXAMPLE = 'retry: 1000\n\n' +
  'id: 1795428000125\nevent: ended\ndata: {"ids":["6a1f4d2b-3c5e-4f70-8a91-b2c3d4e5f607"],"ended_at":"2026-11-23T10:00:00.125Z"}\n\n' +
  'id: 1795428000125\nevent: synced\ndata: {}\n\n' +
  ': ping\n\n' +
  'id: 1795428003500\nevent: ended\ndata: {"ids":["0b5e3c1e-8f0a-4c6e-9a57-3d2f1b7c9e41"],"ended_at":"2026-11-23T10:00:03.500Z"}\n\n'

export const STREAM_DESCRIPTION = 'Server-Sent Events (text/event-stream). First `retry: 1000`; then the ends since ' +
  'Last-Event-ID (or `since`, or the whole window) as `ended` events; then one `synced` event (data `{}`): everything ' +
  'up to its id is now held; then an `ended` event whenever this instance learns of ends (`data` is ' +
  '`{"ids": [uuid...], "ended_at": ISO time of the newest}`), and a `: ping` comment every 5 s. Each event\'s `id` is ' +
  'a cursor; reconnect with it as Last-Event-ID (EventSource does). An id may be sent twice. The stream ends when ' +
  'the token expires or its own session ends, when the service shuts down, or when the subscriber reads too slowly.'
