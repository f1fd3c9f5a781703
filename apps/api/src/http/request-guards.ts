import { json, raw, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { KeyAuthenticator } from '../auth/key-authenticator';

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
 * 413 from Content-Length alone, before a byte of the body is read (a body parser reads the whole body first, to
 * answer after the client finished sending). Clients that keep sending get the answer at once; what they still send is
 * discarded by Node as it arrives (closing at once would make many clients report a broken pipe instead of the 413),
 * and the connection is cut if it goes on for long.
 */
export function refuseOversizedBodies(options: { defaultLimit: number; limitByPath: Record<string, number>; describe: (path: string) => string }): RequestHandler {
  return (request: Request, response: Response, next: NextFunction) => {
    const length = Number(request.headers['content-length'] ?? 0);
    const limit = options.limitByPath[request.path] ?? options.defaultLimit;
    if (!(length > limit)) return next();
    response.on('finish', () => {
      if (!request.complete) setTimeout(() => request.socket.destroy(), REFUSED_BODY_DRAIN_MS).unref();
    });
    response.status(413).json({ error: { message: `${options.describe(request.path)} (Content-Length ${length}).`, type: 'invalid_request_error', param: null, code: 'payload_too_large' } });
  };
}

class InvalidUtf8Error extends Error {
  readonly status = 400;
  readonly type = 'invalid_utf8';
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Throws at the first byte sequence that is not UTF-8 (a JSON body holding one would be stored with U+FFFD). */
export function assertUtf8(bytes: Uint8Array, what: string): void {
  try {
    strictUtf8.decode(bytes);
  } catch {
    throw new InvalidUtf8Error(`${what} is not valid UTF-8`);
  }
}

/**
 * The JSON body parser, run only for callers that passed authentication: a request without a valid key is answered
 * 401 by the guard without its body ever being read or parsed. On `unparsedPaths` the body is read as bytes only. Content-Length above the limit is refused before
 * reading (413), and a body that is not valid UTF-8 is refused (400), not decoded with replacement characters.
 */
export function jsonBodyForAuthenticated(authenticator: KeyAuthenticator, limitBytes: number, options: { unparsedPaths: string[] }): RequestHandler {
  const parse = json({ limit: limitBytes, verify: (_request, _response, buffer) => assertUtf8(buffer, 'Request body') });
  // The routes whose bodies may be megabytes get them as bytes: a check thread decodes and parses them.
  const bytes = raw({ type: () => true, limit: limitBytes });
  return (request: Request, response: Response, next: NextFunction) => {
    if (!hasBody(request) || !authenticator.authenticate(request.headers).ok) return next();
    if (request.method === 'POST' && options.unparsedPaths.includes(request.path)) return bytes(request, response, next);
    parse(request, response, next);
  };
}
