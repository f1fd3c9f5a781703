// Reads a batch's server-sent events the way a client does (fetch, frames split on blank lines).

export interface SseEvent {
  type: string;
  id?: string;
  data: Record<string, unknown>;
}

export interface ReadOptions {
  lastEventId?: string;
  signal?: AbortSignal;
  onEvent?: (event: SseEvent) => void;
  /** Keep-alive comments seen are counted here. */
  comments?: { count: number };
  /** Retry a 503 after its Retry-After (as a client reconnecting after an outage should), up to this many times. */
  retriesOn503?: number;
}

/** The frames of a server-sent event stream as they arrive (split on blank lines), comments included. */
export async function* sseFrames(body: ReadableStream<Uint8Array> | null): AsyncGenerator<string> {
  if (!body) return;
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      yield buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
    }
  }
}

/** Every event until the server ends the stream (or `signal` aborts it: then the events read so far). */
export async function readBatchEvents(base: string, key: string, batchId: string, options: ReadOptions = {}): Promise<SseEvent[]> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (options.lastEventId !== undefined) headers['last-event-id'] = options.lastEventId;
  const events: SseEvent[] = [];
  try {
    let response = await fetch(`${base}/batches/${batchId}/events`, { headers, signal: options.signal });
    for (let retry = 0; response.status === 503 && retry < (options.retriesOn503 ?? 0); retry++) {
      await new Promise((resolve) => setTimeout(resolve, Number(response.headers.get('retry-after') ?? 1) * 1000));
      response = await fetch(`${base}/batches/${batchId}/events`, { headers, signal: options.signal });
    }
    if (response.status !== 200) throw new Error(`events of ${batchId}: HTTP ${response.status} ${await response.text()}`);
    for await (const frame of sseFrames(response.body)) {
      if (frame.startsWith(':')) {
        if (options.comments) options.comments.count++;
        continue;
      }
      const fields = new Map(frame.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)] as const));
      const event: SseEvent = { type: fields.get('event') ?? 'message', id: fields.get('id'), data: JSON.parse(fields.get('data') ?? 'null') as Record<string, unknown> };
      events.push(event);
      options.onEvent?.(event);
    }
  } catch (error) {
    if (!options.signal?.aborted) throw error;
  }
  return events;
}
