import { HttpStatus } from '@nestjs/common/enums/http-status.enum';

// Every error the api answers has OpenAI's shape, so OpenAI clients surface the message:
// { "error": { "message", "type", "param", "code", "line" } }
// A plain Error (not Nest's HttpException), so the request-check threads that throw it load no framework; the api's
// exception filter answers it.

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error'
  | 'rate_limit_error' | 'conflict_error' | 'server_error';

export interface ApiErrorBody {
  error: { message: string; type: ApiErrorType; param: string | null; code: string | null; line?: number };
}

export interface ApiErrorOptions {
  param?: string | null;
  code?: string | null;
  line?: number;
  /** Sent as the Retry-After header (429, 503). */
  retryAfterSeconds?: number;
}

export class ApiError extends Error {
  readonly retryAfterSeconds?: number;
  private readonly body: ApiErrorBody;

  constructor(private readonly status: number, type: ApiErrorType, message: string, options: ApiErrorOptions = {}) {
    super(message);
    this.name = 'ApiError';
    this.body = { error: { message, type, param: options.param ?? null, code: options.code ?? null } };
    if (options.line !== undefined) this.body.error.line = options.line;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  getStatus(): number {
    return this.status;
  }

  getResponse(): ApiErrorBody {
    return this.body;
  }

  static redisUnavailable(retryAfterSeconds: number): ApiError {
    return new ApiError(HttpStatus.SERVICE_UNAVAILABLE, 'server_error', `The service's Redis is unreachable; retry in ${retryAfterSeconds} s.`,
      { code: 'redis_unavailable', retryAfterSeconds });
  }

  static badRequest(message: string, options: { param?: string | null; code?: string; line?: number } = {}): ApiError {
    return new ApiError(HttpStatus.BAD_REQUEST, 'invalid_request_error', message, options);
  }

  static notFound(what: string, id: string): ApiError {
    return new ApiError(HttpStatus.NOT_FOUND, 'not_found_error', `No ${what} found with id '${id}'.`, { code: 'not_found' });
  }

  static tooLarge(message: string, param: string | null = null): ApiError {
    return new ApiError(HttpStatus.PAYLOAD_TOO_LARGE, 'invalid_request_error', message, { param, code: 'payload_too_large' });
  }

  static conflict(message: string, code: string): ApiError {
    return new ApiError(HttpStatus.CONFLICT, 'conflict_error', message, { code });
  }
}

/** A validation failure at a line of an uploaded JSONL file (1-based) and a field path within it. */
export function lineError(line: number, field: string | null, message: string): ApiError {
  const where = field ? `line ${line}, field ${field}` : `line ${line}`;
  return ApiError.badRequest(`${where}: ${message}`, { param: field, line, code: 'invalid_batch_line' });
}
