// The batch lifecycle end to end with a real worker process: creation that never runs half a batch, interrupted
// creations finished by a retry or the recovery sweep, batches that fail while their prompts run.
import { Redis } from 'ioredis';
import { PRIORITY, generateJobId, jobOf, type GenerateJobData, type GenerateJobDataV1 } from '@app/contracts';
import { INTERRUPTED_CREATION_MS } from '../../apps/api/src/batches/batch-lifecycle.service';
import { requestFingerprint } from '../../apps/api/src/batches/batch-submission.service';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { QueueHarness, promptsOf, sleep } from '../support/queue-harness';

jest.setTimeout(180_000);

const params = { maxNewTokens: 4, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], numReturnSequences: 1, returnFullText: false, ignoreEos: true, truncate: false };
const PRINCIPAL = { tenant: 'test', admin: true, keyId: 'test' };

describe('batch lifecycle (real Redis, worker process, tiny model)', () => {
  let redis: TestRedis;
  let harness: QueueHarness;
  let worker: WorkerProcess;

  beforeAll(async () => {
    let modelDir: string;
    [redis, modelDir] = await Promise.all([startTestRedis(), tinyModelDir()]);
    harness = QueueHarness.open(redis.url, redis.prefix);
    worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4 });
  });
  afterAll(async () => {
    await worker?.kill();
    await harness?.close();
    await redis?.stop();
  });

  /** What an api that died between enqueueing and in_progress leaves: a validating batch whose jobs are queued. */
  async function interruptedCreation(total: number, enqueued: number, idempotency?: { key: string; body: unknown }) {
    const items = promptsOf(total).map((prompt, index) => ({ index, customId: `req-${index}`, prompt, params }));
    const id = `batch_${Math.random().toString(16).slice(2).padEnd(24, '0')}`;
    const outcome = await harness.store.batches.create(
      { id, kind: 'native', owner: 'test', endpoint: '/v1/completions', model: 'tiny', completionWindow: '24h', completionWindowMs: 86_400_000, metadata: null, inputFileId: null, items, retentionSeconds: 0 },
      idempotency ? { idempotency: { owner: 'test', key: idempotency.key, fingerprint: requestFingerprint(idempotency.body), ttlSeconds: 600 } } : {},
    );
    if (!('created' in outcome)) throw new Error('not created');
    await harness.queue.enqueue(items.slice(0, enqueued).map((item) => jobOf(id, 'test', item)));
    return id;
  }

  /** Waits until the worker has taken every enqueued job of the batch and put it back (held, not run). */
  async function heldByWorker(batchId: string, enqueued: number): Promise<void> {
    for (;;) {
      const jobs = await Promise.all(Array.from({ length: enqueued }, (_, i) => harness.queue.queue.getJob(`${batchId}-${i}`)));
      if (jobs.every((job) => job && job.attemptsStarted > 0)) return;
      await sleep(100);
    }
  }

  it('runs a batch stored by the previous version (items with their parameters inline, version-1 jobs) as it runs a current one', async () => {
    const prompts = promptsOf(6, 'Legacy');
    const items = prompts.map((prompt, index) => ({ index, customId: `req-${index}`, prompt, params }));
    const id = `batch_${Math.random().toString(16).slice(2).padEnd(24, '0')}`;
    const outcome = await harness.store.batches.create({ id, kind: 'native', owner: 'test', endpoint: '/v1/completions', model: 'tiny', completionWindow: '24h', completionWindowMs: 86_400_000, metadata: null, inputFileId: null, items, retentionSeconds: 0 });
    if (!('created' in outcome)) throw new Error('not created');
    // What the previous version wrote: each item whole, no parameter sets, and jobs that carry prompt and parameters.
    const itemsKey = harness.store.batches.keys.items(id);
    const client = new Redis(redis.url);
    await client.del(itemsKey);
    await client.hset(itemsKey, Object.fromEntries(items.map((item) => [String(item.index), JSON.stringify(item)])));
    client.disconnect();
    const v1Jobs: GenerateJobDataV1[] = items.map((item) => ({ v: 1, kind: 'batch', batchId: id, index: item.index, customId: item.customId, prompt: item.prompt, params, owner: 'test', enqueuedAt: Date.now() }));
    await harness.queue.queue.addBulk(v1Jobs.map((data) => ({ name: 'batch', data: data as unknown as GenerateJobData, opts: { jobId: generateJobId(id, data.index), priority: PRIORITY.batch } })));
    await harness.store.batches.markInProgress(id);
    const legacy = await harness.waitForFinal(id, 120_000);
    expect(legacy).toMatchObject({ status: 'completed', requestCounts: { total: 6, completed: 6, failed: 0 } });
    const current = await harness.waitForFinal(await harness.submitBatch(prompts, params), 120_000);
    expect(current.status).toBe('completed');
    const texts = async (batchId: string) => (await harness.results(batchId, 6)).map((r) => r?.output?.sequences[0].text);
    expect(await texts(id)).toEqual(await texts(current.id));
    expect((await texts(id)).every((text) => typeof text === 'string')).toBe(true);
  });

  it('holds the jobs of a batch still being created; the recovery sweep finishes it, and nothing ran before', async () => {
    const batchId = await interruptedCreation(12, 6);
    await heldByWorker(batchId, 6);
    expect(await harness.store.batches.get(batchId)).toMatchObject({ status: 'validating', requestCounts: { total: 12, completed: 0, failed: 0 } });
    expect(await harness.results(batchId, 12)).toEqual(Array(12).fill(null));
    for (let i = 0; i < 6; i++) expect((await harness.queue.queue.getJob(`${batchId}-${i}`))?.attemptsMade).toBe(0);

    await harness.lifecycle.sweep(Date.now() + INTERRUPTED_CREATION_MS + 1000);
    const batch = await harness.waitForFinal(batchId, 120_000);
    expect(batch).toMatchObject({ status: 'completed', requestCounts: { total: 12, completed: 12, failed: 0 } });
    expect((await harness.results(batchId, 12)).every((r) => r?.status === 'succeeded' && r.attempts === 1)).toBe(true);
  });

  it('finishes an interrupted creation when the client retries with the same Idempotency-Key (never a half batch as success)', async () => {
    const body = { prompts: 'same request' };
    const batchId = await interruptedCreation(8, 3, { key: 'retry-key', body });
    const items = promptsOf(8).map((prompt, index) => ({ index, customId: `req-${index}`, prompt, params }));
    const replay = await harness.submissions.submit(PRINCIPAL, { kind: 'native', endpoint: '/v1/completions', items, completionWindow: '24h', metadata: null, inputFileId: null }, { key: 'retry-key', body });
    expect(replay).toMatchObject({ id: batchId, status: 'in_progress' });
    const batch = await harness.waitForFinal(batchId, 120_000);
    expect(batch).toMatchObject({ status: 'completed', requestCounts: { total: 8, completed: 8, failed: 0 } });
  });

  it('stops generating for a batch that failed while its prompts run; every item is accounted for', async () => {
    const total = 40;
    const batchId = await harness.submitBatch(promptsOf(total, 'Long'), { maxNewTokens: 1000, ignoreEos: true });
    await harness.waitForCounts(batchId, 1, 120_000);
    await harness.store.batches.fail(batchId, [{ code: 'enqueue_failed', message: 'failed while running' }]);
    await harness.waitForCounts(batchId, total, 60_000);
    const batch = await harness.store.batches.get(batchId);
    const results = await harness.results(batchId, total);
    const succeeded = results.filter((r) => r?.status === 'succeeded');
    const stopped = results.filter((r) => r?.status === 'failed');
    expect(batch?.status).toBe('failed');
    expect(succeeded.length + stopped.length).toBe(total);
    expect(stopped.length).toBeGreaterThan(0);
    expect(stopped.every((r) => r?.error?.code === 'batch_failed')).toBe(true);
    expect(batch?.requestCounts).toEqual({ total, completed: succeeded.length, failed: stopped.length });
  });
});
