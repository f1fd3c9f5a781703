// Drives the queue side the way the api does (store batch record + one job per prompt), so worker tests need no
// HTTP, and reads back what the workers recorded.
import { randomUUID } from 'node:crypto';
import type { GenerateJobData, ItemResult } from '@app/contracts';
import { resolveGenerationParams, type GenerationParams } from '@app/engine';
import { GenerateQueue } from '@app/queue';
import { RedisResultsStore, createRedisClient, type BatchRecord, type RedisClient, type RedisConnectionConfig } from '@app/store';

export class QueueHarness {
  private constructor(
    readonly store: RedisResultsStore,
    readonly queue: GenerateQueue,
    private readonly redis: RedisClient,
  ) {}

  /** On a plain Redis (`redisUrl`), or on a Sentinel group or Cluster (`topology`). */
  static open(redisUrl: string, prefix: string, attempts = 3, topology: RedisConnectionConfig = { url: redisUrl }): QueueHarness {
    const redis = createRedisClient(topology, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const store = new RedisResultsStore(redis, {
      prefix, retentionSeconds: 0, fileRetentionSeconds: 0, idempotencySeconds: 60,
      createSubscriber: () => createRedisClient(topology, { maxRetriesPerRequest: null }).on('error', () => undefined),
    });
    const queue = new GenerateQueue({ redisUrl, redis: topology, prefix, attempts });
    // Failover tests take Redis away under the harness too: its clients reconnect; the errors are expected.
    queue.queue.on('error', () => undefined);
    return new QueueHarness(store, queue, redis);
  }

  /** Creates a batch of prompts and enqueues one job per prompt; returns its id. */
  async submitBatch(prompts: Array<string | { prompt: unknown; params?: Partial<GenerationParams> }>, params: Partial<GenerationParams> = {}, completionWindowMs = 3_600_000): Promise<string> {
    const id = `batch_${randomUUID().replace(/-/g, '')}`;
    const items = prompts.map((entry, index) => {
      const p = typeof entry === 'string' ? { prompt: entry } : entry;
      return { index, customId: `req-${index}`, prompt: p.prompt as string, params: { ...resolveGenerationParams(params), ...p.params } };
    });
    await this.store.createBatch({
      id, kind: 'native', owner: 'test', endpoint: '/v1/completions', model: 'tiny', completionWindowMs, completionWindow: '24h',
      metadata: null, inputFileId: null, items,
    });
    const jobs: GenerateJobData[] = items.map((item) => ({ kind: 'batch', batchId: id, owner: 'test', enqueuedAt: Date.now(), ...item }));
    await this.queue.enqueueItems(jobs);
    await this.store.markBatchInProgress(id);
    return id;
  }

  /** Polls until the batch reaches a final status; returns it. */
  async waitForFinal(batchId: string, timeoutMs: number): Promise<BatchRecord> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const batch = await this.store.getBatch(batchId);
      if (batch && ['completed', 'failed', 'expired', 'cancelled'].includes(batch.status)) return batch;
      if (Date.now() > deadline) throw new Error(`batch ${batchId} not final after ${timeoutMs} ms: ${JSON.stringify(batch?.requestCounts)} ${batch?.status}`);
      await sleep(100);
    }
  }

  async waitForCounts(batchId: string, done: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const batch = await this.store.getBatch(batchId);
      const counts = batch?.requestCounts;
      if (counts && counts.completed + counts.failed >= done) return;
      if (Date.now() > deadline) throw new Error(`batch ${batchId}: fewer than ${done} results after ${timeoutMs} ms (${JSON.stringify(counts)})`);
      await sleep(50);
    }
  }

  async results(batchId: string, total: number): Promise<(ItemResult | null)[]> {
    return this.store.listResults(batchId, 0, total);
  }

  /** Results held for the batch in Redis (one hash field per item: a duplicate cannot add one). */
  async storedResultCount(batchId: string): Promise<number> {
    return this.redis.hlen(this.store.keys.results(batchId));
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
