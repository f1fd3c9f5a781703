// A request body as bytes, and its UTF-8 text: plain functions with no framework in them, used by the express
// middleware that reads bodies and by the check threads that decode and parse them.

/** A body read as bytes: one array when its length was announced, blocks when it came chunked (joined by the reader). */
export type BodyBytes = Uint8Array | Uint8Array[];

class InvalidUtf8Error extends Error {
  readonly status = 400;
  readonly type = 'invalid_utf8';
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Throws at the first byte sequence that is not UTF-8 (a JSON body holding one would be stored with U+FFFD). */
export function assertUtf8(bytes: Uint8Array, what: string): void {
  decodeUtf8(bytes, what);
}

/** The text of these bytes, checked and decoded in one pass; throws at the first sequence that is not UTF-8. */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new InvalidUtf8Error(`${what} is not valid UTF-8`);
  }
}

/** One array of a body's bytes (a chunked body's blocks joined: call it off the event loop, on a check thread). */
export function joinedBody(body: BodyBytes): Uint8Array {
  return Array.isArray(body) ? Buffer.concat(body) : body;
}
