import type { ItemResult, RecordOutcome } from '@app/contracts';
import { RedisResultsStore, createRedisClient, type BatchRecord, type RedisClient, type StreamMessage, type WorkerHeartbeatInfo } from '@app/store';
import type { WorkerConfig } from './config/worker-config';
import type { WorkerStore } from './ports';

/** The worker's view of the Redis results store; owns its connections and closes them. */
export class RedisWorkerStore implements WorkerStore {
  private readonly redis: RedisClient;
  private readonly store: RedisResultsStore;

  constructor(config: WorkerConfig) {
    // Unlike the queue's connections, store calls fail after a few retries while Redis is away; the job then
    // fails its attempt and BullMQ retries it once Redis is back.
    this.redis = createRedisClient(config.redis, { maxRetriesPerRequest: 20 });
    this.redis.on('error', () => undefined);
    this.store = new RedisResultsStore(this.redis, {
      prefix: config.prefix,
      retentionSeconds: config.batchRetentionSeconds,
      fileRetentionSeconds: 0,
      idempotencySeconds: 24 * 3600,
      createSubscriber: () => createRedisClient(config.redis),
    });
  }

  recordResult(result: ItemResult): Promise<RecordOutcome> {
    return this.store.recordResult(result);
  }

  getResult(batchId: string, index: number): Promise<ItemResult | null> {
    return this.store.getResult(batchId, index);
  }

  getBatch(batchId: string): Promise<BatchRecord | null> {
    return this.store.getBatch(batchId);
  }

  publishStream(requestId: string, message: StreamMessage): Promise<void> {
    return this.store.publishStream(requestId, message);
  }

  recordWorkerHeartbeat(workerId: string, info: WorkerHeartbeatInfo): Promise<void> {
    return this.store.recordWorkerHeartbeat(workerId, info);
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
