import type { RedisClient } from '@app/redis';
import { BatchEvents } from './batch-events';
import { BatchLedger } from './batch-ledger';
import { Files } from './files';
import { IdempotencyKeys } from './idempotency-keys';
import { ItemResults } from './item-results';
import { RedisRateLimiter } from './rate-limiter';
import { WorkerRegistry } from './worker-registry';

export interface RedisStoreOptions {
  /** Key prefix (may hold a Cluster hash tag, e.g. `{falconq}`). */
  prefix: string;
  /** Seconds an uploaded file is kept; 0 keeps it until deleted. */
  fileRetentionSeconds: number;
  /** Minimum ms between two progress events of one batch. */
  progressIntervalMs?: number;
  /** Events kept per batch for late subscribers. */
  historySize?: number;
  /** Creates the extra connection used for subscriptions. */
  createSubscriber: () => RedisClient;
}

/**
 * Every part of the store over one connection, for the api (which serves all of them). A worker builds only the
 * parts it uses.
 */
export class RedisStore {
  readonly batches: BatchLedger;
  readonly results: ItemResults;
  readonly files: Files;
  readonly idempotency: IdempotencyKeys;
  readonly workers: WorkerRegistry;
  readonly events: BatchEvents;
  readonly rateLimiter: RedisRateLimiter;

  constructor(private readonly redis: RedisClient, options: RedisStoreOptions) {
    this.batches = new BatchLedger(redis, { prefix: options.prefix, historySize: options.historySize });
    this.results = new ItemResults(redis, { prefix: options.prefix, progressIntervalMs: options.progressIntervalMs });
    this.files = new Files(redis, { prefix: options.prefix, retentionSeconds: options.fileRetentionSeconds });
    this.idempotency = new IdempotencyKeys(redis, options.prefix);
    this.workers = new WorkerRegistry(redis, options.prefix);
    this.events = new BatchEvents(redis, { prefix: options.prefix, createSubscriber: options.createSubscriber });
    this.rateLimiter = new RedisRateLimiter(redis, options.prefix);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /** Closes the subscriptions; the caller owns the connection it passed. */
  async close(): Promise<void> {
    await this.events.close();
  }
}
