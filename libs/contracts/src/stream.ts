import type { ItemResult } from './result';

// Streaming of online requests (kind 'online'): the worker that runs the request publishes the text as it is
// generated on a Redis pub/sub channel; the api subscribes before it enqueues the job and relays the messages (SSE).
// Pub/sub is fire-and-forget: the final result is also recorded in the store, so a client that missed messages
// still gets the whole text from there.

/** `<prefix>:stream:<requestId>`; the prefix is the same FALCONQ_REDIS_PREFIX the queue uses. */
export function streamChannel(prefix: string, requestId: string): string {
  return `${prefix}:stream:${requestId}`;
}

export type StreamMessage =
  /** Text added to return sequence `sequence` (0 unless numReturnSequences > 1). */
  | { type: 'delta'; sequence: number; delta: string }
  /** The request finished (succeeded, failed, cancelled): the last message on the channel. */
  | { type: 'done'; result: ItemResult };
