// Drives the queue side through the api's own submission and cancel code (BatchSubmissionService,
// BatchLifecycleService), so worker tests need no HTTP, and reads back what the workers recorded.
import { isFinalStatus, type ItemResult, type JobParams } from '@app/contracts';
import { resolveGenerationParams } from '@app/engine';
import { GenerateQueue } from '@app/queue';
import { createRedisClient, type RedisClient, type RedisConnectionConfig } from '@app/redis';
import { RedisStore, type BatchRecord } from '@app/store';
import { BatchLifecycleService } from '../../apps/api/src/batches/batch-lifecycle.service';
import { BatchSubmissionService, COMPLETION_WINDOWS } from '../../apps/api/src/batches/batch-submission.service';
import type { ApiConfig } from '../../apps/api/src/config/api-config';
import type { Principal } from '../../apps/api/src/auth/principal';
import type { ServedModel } from '../../apps/api/src/model/served-model';

const PRINCIPAL: Principal = { tenant: 'test', admin: true, keyId: 'test' };

export class QueueHarness {
  private constructor(
    readonly store: RedisStore,
    readonly queue: GenerateQueue,
    readonly submissions: BatchSubmissionService,
    readonly lifecycle: BatchLifecycleService,
    private readonly redis: RedisClient,
  ) {}

  /** On a plain Redis (`redisUrl`), or on a Sentinel group or Cluster (`topology`). */
  static open(redisUrl: string, prefix: string, attempts = 3, topology: RedisConnectionConfig = { url: redisUrl }): QueueHarness {
    const redis = createRedisClient(topology, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const store = new RedisStore(redis, {
      prefix, fileRetentionSeconds: 0,
      createSubscriber: () => createRedisClient(topology, { maxRetriesPerRequest: null }).on('error', () => undefined),
    });
    const queue = new GenerateQueue({ redisUrl, redis: topology, prefix, attempts });
    // Failover tests take Redis away under the harness too: its clients reconnect; the errors are expected.
    queue.queue.on('error', () => undefined);
    // The settings the submission and lifecycle services read; their sweep timer is not started here.
    const config = { limits: { maxBatchesInFlight: 0 }, retention: { batchSeconds: 0, idempotencySeconds: 600 } } as ApiConfig;
    const submissions = new BatchSubmissionService(config, store, queue, { id: 'tiny' } as ServedModel);
    return new QueueHarness(store, queue, submissions, new BatchLifecycleService(config, store, queue, submissions), redis);
  }

  /** Creates a batch of prompts the way the api does (stored, enqueued, in_progress); returns its id. */
  async submitBatch(prompts: Array<string | { prompt: unknown; params?: Partial<JobParams> }>, params: Partial<JobParams> = {}, completionWindowMs = 3_600_000): Promise<string> {
    const items = prompts.map((entry, index) => {
      const p = typeof entry === 'string' ? { prompt: entry } : entry;
      return { index, customId: `req-${index}`, prompt: p.prompt as string, params: { ...resolveGenerationParams(params), ...p.params } };
    });
    const completionWindow = `${completionWindowMs}ms`;
    COMPLETION_WINDOWS[completionWindow] = completionWindowMs;
    const batch = await this.submissions.submit(PRINCIPAL, { kind: 'native', endpoint: '/v1/completions', items, completionWindow, metadata: null, inputFileId: null }, null);
    return batch.id;
  }

  /** Cancels through the api's cancel code: takes back what no worker holds, workers stop the rest. */
  async cancel(batchId: string): Promise<BatchRecord> {
    return this.lifecycle.cancel(PRINCIPAL, batchId);
  }

  /** Polls until the batch reaches a final status; returns it. */
  async waitForFinal(batchId: string, timeoutMs: number): Promise<BatchRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const batch = await this.store.batches.get(batchId);
      if (batch && isFinalStatus(batch.status)) return batch;
      if (Date.now() > deadline) throw new Error(`batch ${batchId} not final after ${timeoutMs} ms: ${JSON.stringify(batch?.requestCounts)} ${batch?.status}`);
      await sleep(100);
    }
  }

  async waitForCounts(batchId: string, done: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const batch = await this.store.batches.get(batchId);
      const counts = batch?.requestCounts;
      if (counts && counts.completed + counts.failed >= done) return;
      if (Date.now() > deadline) throw new Error(`batch ${batchId}: fewer than ${done} results after ${timeoutMs} ms (${JSON.stringify(counts)})`);
      await sleep(50);
    }
  }

  async results(batchId: string, total: number): Promise<(ItemResult | null)[]> {
    return this.store.results.list(batchId, 0, total);
  }

  /** Results held for the batch in Redis (one hash field per item: a duplicate cannot add one). */
  async storedResultCount(batchId: string): Promise<number> {
    return this.redis.hlen(this.store.batches.keys.results(batchId));
  }

  /** Redis INFO used_memory_human. */
  async usedMemory(): Promise<string> {
    const info = await this.redis.info('memory');
    return /used_memory_human:(\S+)/.exec(info)?.[1] ?? 'unknown';
  }

  async close(): Promise<void> {
    await this.queue.close();
    await this.store.close();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function promptsOf(count: number, seed = 'Question'): string[] {
  return Array.from({ length: count }, (_, i) => `${seed} ${i}: what comes after ${i}?`);
}
