import { Inject, Injectable } from '@nestjs/common';
import type { RedisClient } from '@app/redis';
import { ApiError } from '../http/api-error';
import { REDIS } from './infra.module';

/** Seconds a client is told to wait (Retry-After) while Redis is unreachable: about one reconnect attempt. */
export const REDIS_RETRY_AFTER_S = 2;

/**
 * Whether the api's Redis connection is up, from the client's own state (no round trip). Routes refuse at once
 * while it is down instead of queueing commands that would wait for the reconnect and time out much later.
 */
@Injectable()
export class RedisAvailability {
  constructor(@Inject(REDIS) private readonly redis: RedisClient) {}

  isUp(): boolean {
    return this.redis.status === 'ready';
  }

  assertUp(): void {
    if (!this.isUp()) throw ApiError.redisUnavailable(REDIS_RETRY_AFTER_S);
  }
}

const UNAVAILABLE_MESSAGES = [
  /^Connection is closed/,
  /^Stream isn't writeable/,
  /^Reached the max retries per request limit/,
  /^Command timed out/,
  /^OOM command not allowed/,
  /^LOADING /,
  /^READONLY /,
  /^MASTERDOWN /,
  /^CLUSTERDOWN /,
  /^TRYAGAIN /,
  /^Too many Cluster redirections/,
];
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * An error that means Redis could not do the work now (down, restarting, out of memory under noeviction) rather than
 * a bug: the client should retry later (503 with Retry-After), and the log needs one line, not a stack trace.
 */
export function isRedisUnavailableError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== undefined && UNAVAILABLE_CODES.has(code)) return true;
  if (error.name === 'MaxRetriesPerRequestError') return true;
  return UNAVAILABLE_MESSAGES.some((pattern) => pattern.test(error.message));
}
