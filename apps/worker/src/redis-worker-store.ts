import { Logger } from '@nestjs/common';
import { createRedisClient, type RedisClient } from '@app/redis';
import { BatchEvents, BatchLedger, ItemResults, WorkerRegistry } from '@app/store';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerStore } from './ports';

/** How often one and the same Redis error is logged while it repeats (a reconnect loop repeats it every retry). */
const REPEATED_ERROR_LOG_MS = 10_000;

/** The worker's parts of the Redis store over one connection it owns and closes. */
export class RedisWorkerStore implements WorkerStore {
  readonly batches: BatchLedger;
  readonly results: ItemResults;
  readonly events: BatchEvents;
  readonly workers: WorkerRegistry;
  private readonly redis: RedisClient;

  constructor(config: WorkerConfig) {
    // Unlike the queue's connections, store calls fail after a few retries while Redis is away; the job then
    // fails its attempt and BullMQ retries it once Redis is back.
    this.redis = createRedisClient(config.redis, { maxRetriesPerRequest: 20 });
    logRedisErrors(this.redis, new Logger('Redis'));
    this.batches = new BatchLedger(this.redis, { prefix: config.prefix });
    this.results = new ItemResults(this.redis, { prefix: config.prefix });
    this.events = new BatchEvents(this.redis, { prefix: config.prefix, createSubscriber: () => createRedisClient(config.redis) });
    this.workers = new WorkerRegistry(this.redis, config.prefix);
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** Logs a connection's errors, once per distinct message per interval, so an outage is visible but not a flood. */
export function logRedisErrors(redis: RedisClient, logger: Logger): void {
  const lastLogged = new Map<string, number>();
  redis.on('error', (error: Error) => {
    const now = Date.now();
    if (now - (lastLogged.get(error.message) ?? 0) < REPEATED_ERROR_LOG_MS) return;
    lastLogged.set(error.message, now);
    logger.warn(`redis connection error: ${error.message}`);
  });
}
