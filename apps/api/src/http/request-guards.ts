import { json, raw, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { KeyAuthenticator } from '../auth/key-authenticator';
import { assertUtf8, type BodyBytes } from './body-bytes';

// Express middleware that runs before any body is read: what a request may carry, decided from its headers alone.

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function refuse(response: Response, status: number, code: string, message: string): void {
  response.status(status).json({ error: { message, type: status === 403 ? 'permission_error' : 'invalid_request_error', param: null, code } });
}

/** Whether the request announces a body (a length above 0, or chunked). */
export function hasBody(request: Request): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

/**
 * A browser always sends Origin on a cross-site POST/PUT/DELETE, and may attach credentials it cached (HTTP Basic for
 * the dashboard). API clients (SDKs, curl) send no Origin. So a state-changing request whose Origin is not this host
 * is refused before anything else runs: no cross-site form can create or cancel a batch.
 */
export function refuseCrossSiteWrites(): RequestHandler {
  return (request: Request, response: Response, next: NextFunction) => {
    const origin = request.headers.origin;
    if (SAFE_METHODS.has(request.method) || origin === undefined) return next();
    let originHost: string | null = null;
    try {
      originHost = origin === 'null' ? null : new URL(origin).host;
    } catch {
      originHost = null;
    }
    // Express's host: the Host header, or X-Forwarded-Host from a trusted proxy.
    const host = request.host ?? '';
    if (originHost !== null && originHost === host) return next();
    refuse(response, 403, 'cross_origin_request', `Cross-site ${request.method} refused: Origin ${origin} is not ${host || 'this host'}.`);
  };
}

/**
 * State-changing routes read JSON only (file uploads: multipart). A form-encoded or text/plain body, which a browser
 * may send cross-site without a preflight, is refused with 415 before it is read.
 */
export function requireJsonBodies(options: { multipartPaths: string[] }): RequestHandler {
  return (request: Request, response: Response, next: NextFunction) => {
    if (SAFE_METHODS.has(request.method) || !hasBody(request)) return next();
    const type = (request.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type === 'application/json') return next();
    if (type === 'multipart/form-data' && options.multipartPaths.includes(request.path)) return next();
    refuse(response, 415, 'unsupported_media_type',
      `Content-Type ${type || '(none)'} is not accepted: send the body as application/json${options.multipartPaths.length ? ` (file uploads: multipart/form-data to ${options.multipartPaths.join(', ')})` : ''}.`);
  };
}

/** How long a refused body may keep arriving (discarded, never held) after the answer before its connection is cut. */
const REFUSED_BODY_DRAIN_MS = 10_000;

/**
 * For a request answered before its body was read to the end: what the client still sends is discarded by Node as it
 * arrives (closing at once would make many clients report a broken pipe instead of the answer), and the connection is
 * cut if it goes on for long after the answer.
 */
export function discardRestOfBody(request: Request, response: Response): void {
  response.once('finish', () => {
    if (!request.complete) setTimeout(() => request.socket.destroy(), REFUSED_BODY_DRAIN_MS).unref();
  });
}

/**
 * 413 from Content-Length alone, before a byte of the body is read (a body parser reads the whole body first, to
 * answer after the client finished sending). Clients that keep sending get the answer at once; the rest of the body is
 * discarded (discardRestOfBody).
 */
export function refuseOversizedBodies(options: { defaultLimit: number; limitByPath: Record<string, number>; describe: (path: string) => string }): RequestHandler {
  return (request: Request, response: Response, next: NextFunction) => {
    const length = Number(request.headers['content-length'] ?? 0);
    const limit = options.limitByPath[request.path] ?? options.defaultLimit;
    if (!(length > limit)) return next();
    discardRestOfBody(request, response);
    response.status(413).json({ error: { message: `${options.describe(request.path)} (Content-Length ${length}).`, type: 'invalid_request_error', param: null, code: 'payload_too_large' } });
  };
}

/**
 * The JSON body parser, run only for callers that passed authentication: a request without a valid key is answered
 * 401 by the guard without its body ever being read or parsed. On `unparsedPaths` the body is read as bytes only. Content-Length above the limit is refused before
 * reading (413), and a body that is not valid UTF-8 is refused (400), not decoded with replacement characters.
 */
export function jsonBodyForAuthenticated(authenticator: KeyAuthenticator, limitBytes: number, options: { unparsedPaths: string[] }): RequestHandler {
  const parse = json({ limit: limitBytes, verify: (_request, _response, buffer) => assertUtf8(buffer, 'Request body') });
  // The routes whose bodies may be megabytes get them as bytes: a check thread decodes and parses them.
  const bytes = readBodyBytes(limitBytes);
  return (request: Request, response: Response, next: NextFunction) => {
    if (!hasBody(request) || !authenticator.authenticate(request.headers).ok) return next();
    if (request.method === 'POST' && options.unparsedPaths.includes(request.path)) return bytes(request, response, next);
    parse(request, response, next);
  };
}

/** Blocks a body of unknown length (chunked) is gathered in: each chunk is copied once, into the current block. */
const BODY_BLOCK_BYTES = 1024 * 1024;

function bodyError(status: number, type: string, message: string): Error {
  return Object.assign(new Error(message), { status, type });
}

/**
 * Reads a body as bytes into arrays that own their memory, so the check thread gets them by transfer, not by copy,
 * and nothing copies the whole body on the event loop: each chunk is copied once as it arrives, into an array of the
 * announced Content-Length (a chunked body: into 1 MiB blocks). The body parser's raw() would gather the chunks and
 * join them at the end, one copy of the whole body in one go (about 50 ms for 10 MiB on a busy 2-core machine, during
 * which no other request is answered). A compressed body (Content-Encoding) is left to raw(), which inflates it.
 */
export function readBodyBytes(limitBytes: number): RequestHandler {
  const inflating = raw({ type: () => true, limit: limitBytes });
  return (request: Request, response: Response, next: NextFunction) => {
    const encoding = (request.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') return inflating(request, response, next);
    const announced = request.headers['content-length'] === undefined ? null : Number(request.headers['content-length']);
    if (announced !== null && announced > limitBytes) return next(bodyError(413, 'entity.too.large', 'request entity too large'));
    const blocks: Uint8Array[] = [];
    let block = new Uint8Array(announced ?? Math.min(BODY_BLOCK_BYTES, limitBytes));
    let used = 0;
    let received = 0;
    let finished = false;
    const finish = (error?: Error) => {
      if (finished) return;
      finished = true;
      request.off('data', onData).off('end', onEnd).off('aborted', onAborted).off('error', onError);
      if (error) {
        // What still arrives is discarded; the answer goes out now.
        request.resume();
        return next(error);
      }
      (request as Request & { _body?: boolean })._body = true;
      request.body = bodyOf(blocks, block, used, announced);
      next();
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      if (received > limitBytes) return finish(bodyError(413, 'entity.too.large', 'request entity too large'));
      if (announced !== null && received > announced) return finish(bodyError(400, 'request.size.invalid', 'request size did not match content length'));
      let offset = 0;
      while (offset < chunk.byteLength) {
        if (used === block.byteLength) {
          blocks.push(block);
          block = new Uint8Array(Math.min(BODY_BLOCK_BYTES, limitBytes));
          used = 0;
        }
        const take = Math.min(block.byteLength - used, chunk.byteLength - offset);
        block.set(chunk.subarray(offset, offset + take), used);
        used += take;
        offset += take;
      }
    };
    const onEnd = () => {
      if (announced !== null && received !== announced) return finish(bodyError(400, 'request.size.invalid', 'request size did not match content length'));
      finish();
    };
    const onAborted = () => finish(bodyError(400, 'request.aborted', 'request aborted'));
    const onError = (error: Error) => finish(Object.assign(error, { status: 400 }));
    request.on('data', onData).on('end', onEnd).on('aborted', onAborted).on('error', onError);
  };
}

/** The body: the announced-length array as is; a chunked body's blocks, the last one cut to what it holds. */
function bodyOf(blocks: Uint8Array[], last: Uint8Array, used: number, announced: number | null): BodyBytes {
  if (announced !== null) return last;
  // Cutting copies at most one block (1 MiB), and gives the last block a buffer of its own to transfer.
  const all = used === 0 ? blocks : [...blocks, used === last.byteLength ? last : last.slice(0, used)];
  return all.length === 1 ? all[0] : all;
}
