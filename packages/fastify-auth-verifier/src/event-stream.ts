/** One Server-Sent Event, as the HTML standard's event stream interpretation dispatches it. */
export interface ServerSentEvent {
  event: string
  data: string
  /** The last event id seen on the stream so far (what Last-Event-ID resumes from). */
  id: string | undefined
}

export interface EventStreamHandlers {
  onEvent: (event: ServerSentEvent) => void
  /** Anything arrived: an event, a field or a comment (the feed's `: ping` heartbeat). */
  onActivity: () => void
  onRetry: (ms: number) => void
}

/**
 * Reads a text/event-stream body to its end (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 * Lines longer than maxLineLength end the stream with an error: a feed of ids never needs them.
 */
export async function readEventStream (body: AsyncIterable<Uint8Array>, handlers: EventStreamHandlers, lastEventId?: string, maxLineLength = 1 << 20): Promise<void> {
  const decoder = new TextDecoder()
  let buffer = ''
  let event = ''
  let data: string[] = []
  let id = lastEventId
  let first = true

  const line = (text: string): void => {
    if (text === '') {
      if (data.length > 0) handlers.onEvent({ event: event === '' ? 'message' : event, data: data.join('\n'), id })
      event = ''
      data = []
      return
    }
    if (text.startsWith(':')) return
    const colon = text.indexOf(':')
    const field = colon === -1 ? text : text.slice(0, colon)
    let value = colon === -1 ? '' : text.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    switch (field) {
      case 'event': event = value; break
      case 'data': data.push(value); break
      case 'id': if (!value.includes('\0')) id = value; break
      case 'retry': if (/^\d+$/.test(value)) handlers.onRetry(Number(value)); break
    }
  }

  for await (const chunk of body) {
    let text = decoder.decode(chunk, { stream: true })
    if (first) {
      if (text.startsWith('\uFEFF')) text = text.slice(1)
      first = false
    }
    buffer += text
    const newline = /\r\n|\r|\n/g
    let start = 0
    for (let match = newline.exec(buffer); match !== null; match = newline.exec(buffer)) {
      // A lone \r at the end of a chunk may be the first half of \r\n: wait for the next chunk.
      if (match[0] === '\r' && match.index === buffer.length - 1) break
      line(buffer.slice(start, match.index))
      start = match.index + match[0].length
    }
    buffer = buffer.slice(start)
    if (buffer.length > maxLineLength) throw new Error('event stream line too long')
    handlers.onActivity()
  }
}
