import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';

/** Sliding-window request limiter shared by every api replica (see RATE_LIMIT in scripts.ts). */
export class RedisRateLimiter {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.keys = new StoreKeys(prefix);
  }

  /**
   * Counts one request of `subject`; returns whether it is within `limit` per any `windowMs`, and, when refused, how
   * long until a request would be accepted.
   */
  async consume(subject: string, limit: number, windowMs = 60_000): Promise<{ allowed: boolean; retryAfterMs: number; remaining: number }> {
    const [allowed, count, retryAfterMs] = (await withStoreCommands(this.redis).falconqRateLimit(this.keys.rateLimit(subject), limit, windowMs)) as [number, number, number];
    return { allowed: allowed === 1, retryAfterMs: Number(retryAfterMs), remaining: Math.max(limit - Number(count), 0) };
  }
}
