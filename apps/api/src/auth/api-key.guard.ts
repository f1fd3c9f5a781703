import { HttpStatus, Inject, Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Response } from 'express';
import type { RedisRateLimiter } from '@app/store';
import { API_CONFIG, type ApiConfig, type OpenableRoute } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { RATE_LIMITER } from '../infra/infra.module';
import { RedisAvailability } from '../infra/redis-availability';
import { KeyAuthenticator } from './key-authenticator';
import type { AuthenticatedRequest } from './principal';

const OPENABLE = 'falconq:openable-route';

/** The route may be served without a key when FALCONQ_OPEN_ROUTES lists `name`. */
export const Openable = (name: OpenableRoute) => SetMetadata(OPENABLE, name);

const PUBLIC = 'falconq:public-route';

/** The route holds no data (the batch page's shell and script): served without a key, and not rate limited. */
export const Public = () => SetMetadata(PUBLIC, true);

/**
 * Global guard: every route needs a valid key (bearer) unless opened by configuration; then the rate limit, per key,
 * or per client address for requests without a valid key (so guessing keys is limited too). While Redis is
 * unreachable every keyed route answers 503 at once instead of waiting on it.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: KeyAuthenticator,
    private readonly redis: RedisAvailability,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(RATE_LIMITER) private readonly rateLimiter: RedisRateLimiter,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean | undefined>(PUBLIC, targets)) return true;
    const openable = this.reflector.getAllAndOverride<OpenableRoute | undefined>(OPENABLE, targets);
    if (openable && this.config.openRoutes.has(openable)) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const response = context.switchToHttp().getResponse<Response>();
    this.redis.assertUp();
    const auth = this.authenticator.authenticate(request.headers);
    if (!auth.ok) {
      await this.enforceRateLimit(`unauthenticated:${request.ip}`, response, 'from this address without a valid key');
      throw new ApiError(HttpStatus.UNAUTHORIZED, 'authentication_error', auth.reason, { code: 'invalid_api_key' });
    }
    request.principal = auth.principal;
    const subject = auth.principal.keyId === 'open' ? `ip:${request.ip}` : auth.principal.keyId;
    await this.enforceRateLimit(subject, response, 'for this key');
    return true;
  }

  private async enforceRateLimit(subject: string, response: Response, whose: string): Promise<void> {
    const limit = this.config.limits.rateLimitPerMinute;
    if (limit === 0) return;
    const outcome = await this.rateLimiter.consume(subject, limit, 60_000);
    response.setHeader('X-RateLimit-Limit', String(limit));
    response.setHeader('X-RateLimit-Remaining', String(outcome.remaining));
    if (!outcome.allowed) {
      const seconds = Math.ceil(outcome.retryAfterMs / 1000);
      throw new ApiError(HttpStatus.TOO_MANY_REQUESTS, 'rate_limit_error',
        `Rate limit of ${limit} requests per minute reached ${whose}; retry in ${seconds} s.`, { code: 'rate_limit_exceeded', retryAfterSeconds: seconds });
    }
  }
}
