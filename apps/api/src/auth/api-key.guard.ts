import { HttpStatus, Inject, Injectable, SetMetadata, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Response } from 'express';
import type { RedisRateLimiter } from '@app/store';
import { API_CONFIG, type ApiConfig, type OpenableRoute } from '../config/api-config';
import { ApiError } from '../http/api-error';
import { RATE_LIMITER } from '../infra/infra.module';
import { KeyAuthenticator } from './key-authenticator';
import type { AuthenticatedRequest } from './principal';

const OPENABLE = 'falconq:openable-route';

/** The route may be served without a key when FALCONQ_OPEN_ROUTES lists `name`. */
export const Openable = (name: OpenableRoute) => SetMetadata(OPENABLE, name);

/** Global guard: every route needs a valid key (bearer) unless opened by configuration; then the per-key rate limit. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly authenticator: KeyAuthenticator,
    @Inject(API_CONFIG) private readonly config: ApiConfig,
    @Inject(RATE_LIMITER) private readonly rateLimiter: RedisRateLimiter,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const targets = [context.getHandler(), context.getClass()];
    const openable = this.reflector.getAllAndOverride<OpenableRoute | undefined>(OPENABLE, targets);
    if (openable && this.config.openRoutes.has(openable)) return true;
    const request = context.switchToHttp().getRequest<AuthenticatedRequest>();
    const auth = this.authenticator.authenticate(request.headers);
    if (!auth.ok) throw new ApiError(HttpStatus.UNAUTHORIZED, 'authentication_error', auth.reason, { code: 'invalid_api_key' });
    request.principal = auth.principal;
    await this.enforceRateLimit(auth.principal.keyId === 'open' ? `ip:${request.ip}` : auth.principal.keyId, context.switchToHttp().getResponse<Response>());
    return true;
  }

  private async enforceRateLimit(subject: string, response: Response): Promise<void> {
    const limit = this.config.limits.rateLimitPerMinute;
    if (limit === 0) return;
    const outcome = await this.rateLimiter.consume(subject, limit, 60_000);
    response.setHeader('X-RateLimit-Limit', String(limit));
    response.setHeader('X-RateLimit-Remaining', String(outcome.remaining));
    if (!outcome.allowed) {
      const seconds = Math.ceil(outcome.retryAfterMs / 1000);
      response.setHeader('Retry-After', String(seconds));
      throw new ApiError(HttpStatus.TOO_MANY_REQUESTS, 'rate_limit_error',
        `Rate limit of ${limit} requests per minute reached for this key; retry in ${seconds} s.`, { code: 'rate_limit_exceeded' });
    }
  }
}
