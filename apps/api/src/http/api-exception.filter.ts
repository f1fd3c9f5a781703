import { ArgumentsHost, Catch, HttpException, HttpStatus, Logger, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import { isRedisUnavailableError, REDIS_RETRY_AFTER_S } from '../infra/redis-availability';
import { ApiError, type ApiErrorBody, type ApiErrorType } from './api-error';

const TYPE_BY_STATUS: Record<number, ApiErrorType> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error',
  409: 'conflict_error', 413: 'invalid_request_error', 415: 'invalid_request_error', 422: 'invalid_request_error', 429: 'rate_limit_error',
};

/**
 * Turns every error into OpenAI's error shape. Redis being unreachable is a 503 with Retry-After and one warning line;
 * only unexpected errors are logged with their stack (never with request bodies), as 500.
 */
@Catch()
export class ApiExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('ApiExceptionFilter');

  constructor(private readonly limits: { maxBodyBytes: number }) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    if (response.headersSent) {
      response.end();
      return;
    }
    if (isRedisUnavailableError(exception)) {
      this.logger.warn(`request refused, Redis unavailable: ${(exception as Error).message}`);
      exception = ApiError.redisUnavailable(REDIS_RETRY_AFTER_S);
    }
    if (exception instanceof ApiError && exception.retryAfterSeconds !== undefined) {
      response.setHeader('Retry-After', String(exception.retryAfterSeconds));
    }
    const { status, body } = this.toBody(exception);
    response.status(status).json(body);
  }

  /** Nest's and its parsers' terse messages, said in terms of falconq's settings. */
  private explain(status: number, message: string): string {
    if (status === 413) return `Request body is larger than FALCONQ_MAX_BODY_BYTES (${this.limits.maxBodyBytes} bytes).`;
    if (status === 400 && /JSON/.test(message)) return `Request body could not be parsed as JSON: ${message}`;
    return message;
  }

  private toBody(exception: unknown): { status: number; body: ApiErrorBody } {
    if (exception instanceof ApiError) return { status: exception.getStatus(), body: exception.getResponse() };
    if (exception instanceof HttpException) {
      const status = exception.getStatus();
      const raw = exception.getResponse();
      if (typeof raw === 'object' && raw !== null && 'error' in raw && typeof (raw as ApiErrorBody).error === 'object') {
        return { status, body: raw as ApiErrorBody };
      }
      const text = typeof raw === 'string' ? raw : String((raw as { message?: unknown }).message ?? exception.message);
      return { status, body: { error: { message: this.explain(status, text), type: TYPE_BY_STATUS[status] ?? 'invalid_request_error', param: null, code: null } } };
    }
    // Body parser errors carry their own status (413 for an oversized JSON body, 400 for malformed JSON).
    const parserError = exception as { status?: number; type?: string; message?: string };
    if (typeof parserError?.status === 'number' && parserError.status >= 400 && parserError.status < 500) {
      const message = parserError.type === 'entity.too.large'
        ? `Request body is larger than FALCONQ_MAX_BODY_BYTES (${this.limits.maxBodyBytes} bytes).`
        : `Request body could not be parsed: ${parserError.message ?? 'invalid'}`;
      return { status: parserError.status, body: { error: { message, type: 'invalid_request_error', param: null, code: parserError.type ?? null } } };
    }
    this.logger.error(exception instanceof Error ? exception.stack ?? exception.message : String(exception));
    return {
      status: HttpStatus.INTERNAL_SERVER_ERROR,
      body: { error: { message: 'Internal server error.', type: 'server_error', param: null, code: null } },
    };
  }
}
