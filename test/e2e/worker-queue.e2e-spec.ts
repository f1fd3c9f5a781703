// The worker process against a real Redis and the tiny model: batch items in, exactly one result per item out.
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { QueueHarness, promptsOf, sleep } from '../support/queue-harness';

jest.setTimeout(120_000);

describe('worker process (real Redis, tiny model)', () => {
  let redis: TestRedis;
  let modelDir: string;
  let harness: QueueHarness;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    [redis, modelDir] = await Promise.all([startTestRedis(), tinyModelDir()]);
    harness = QueueHarness.open(redis.url, redis.prefix);
  });
  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.kill()));
    await harness?.close();
    await redis?.stop();
  });

  const worker = async (env: Record<string, string> = {}) => {
    const w = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots: 4, env });
    workers.push(w);
    return w;
  };

  it('two workers complete a batch with one result per prompt, each prompt generated once (one warmed up at load, one decoding in the loop over dequantized weights)', async () => {
    const [a, b] = await Promise.all([
      worker({ FALCONQ_DECODE_CHUNK: '4', FALCONQ_DEQUANTIZE_WEIGHTS: '1' }),
      worker({ FALCONQ_PREFILL_WARM_UP: 'on', FALCONQ_PREFILL_CHUNK_TOKENS: '4096' }),
    ]);
    expect(a.output()).toMatch(/with 4 slots, 4 decode steps per run, weights dequantized at load/);
    expect(a.output()).not.toContain('prefill warm-up');
    expect(b.output()).toMatch(/with 4 slots, 1 decode step per run, prefill warm-up 1 run in \d+\.\d s/);
    const total = 40;
    const batchId = await harness.submitBatch(promptsOf(total), { maxNewTokens: 4 });
    const batch = await harness.waitForFinal(batchId, 60_000);
    expect(batch.status).toBe('completed');
    expect(batch.requestCounts).toEqual({ total, completed: total, failed: 0 });
    const results = await harness.results(batchId, total);
    expect(results.map((r) => r?.customId)).toEqual(promptsOf(total).map((_, i) => `req-${i}`));
    for (const result of results) {
      expect(result?.status).toBe('succeeded');
      expect(result?.output?.completionTokens).toBeGreaterThan(0);
      expect(result?.attempts).toBe(1);
    }
    const byWorker = new Set(results.map((r) => r?.workerId));
    expect(byWorker).toEqual(new Set([a.workerId, b.workerId]));
    await harness.queue.queue.getJobCounts();
    const heartbeats = await harness.store.workers.list(10_000);
    expect(heartbeats.map((h) => h.workerId)).toEqual(expect.arrayContaining([a.workerId, b.workerId]));
  });

  it('fails a prompt that is the request\'s fault once, without retries, and completes the rest', async () => {
    const tooLong = 'lorem ipsum dolor '.repeat(800);
    const batchId = await harness.submitBatch(['fine 1', { prompt: tooLong }, 'fine 2'], { maxNewTokens: 3 });
    const batch = await harness.waitForFinal(batchId, 60_000);
    expect(batch.requestCounts).toEqual({ total: 3, completed: 2, failed: 1 });
    const [, failed] = await harness.results(batchId, 3);
    expect(failed).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'invalid_request' } });
    expect(failed?.error?.message).toMatch(/prompt/i);
  });

  it('stops a cancelled batch: keeps finished results, records the rest as cancelled', async () => {
    const total = 60;
    const batchId = await harness.submitBatch(promptsOf(total, 'Long'), { maxNewTokens: 1000, ignoreEos: true });
    await harness.waitForCounts(batchId, 4, 120_000);
    expect(['cancelling', 'cancelled']).toContain((await harness.cancel(batchId)).status);
    const batch = await harness.waitForFinal(batchId, 30_000);
    expect(batch.status).toBe('cancelled');
    const after = await harness.results(batchId, total);
    const succeeded = after.filter((r) => r?.status === 'succeeded');
    const cancelled = after.filter((r) => r?.status === 'cancelled');
    expect(succeeded.length).toBeGreaterThanOrEqual(4);
    expect(succeeded.length + cancelled.length).toBe(total);
    expect(batch.requestCounts).toEqual({ total, completed: succeeded.length, failed: cancelled.length });
    expect(cancelled.every((r) => r?.error?.code === 'batch_cancelled')).toBe(true);
  });

  it('stops the generations of a batch whose completion window ran out and records them as expired', async () => {
    if (workers.length === 0) await worker();
    const total = 8;
    const batchId = await harness.submitBatch(promptsOf(total, 'Slow'), { maxNewTokens: 1900, ignoreEos: true }, 700);
    await harness.waitForCounts(batchId, total, 60_000);
    const results = await harness.results(batchId, total);
    expect(results.map((r) => r?.status)).toEqual(Array(total).fill('expired'));
    expect(results[0]?.error?.code).toBe('batch_expired');
    const batch = await harness.store.batches.get(batchId);
    expect(batch?.requestCounts).toEqual({ total, completed: 0, failed: total });
  });

  it('on SIGTERM past the grace period hands unfinished prompts back without spending an attempt', async () => {
    await Promise.all(workers.splice(0).map((other) => other.kill())); // this worker alone must hold the prompts
    const w = await worker({ FALCONQ_SHUTDOWN_GRACE_MS: '300' });
    const total = 4;
    const batchId = await harness.submitBatch(promptsOf(total, 'Endless'), { maxNewTokens: 1900, ignoreEos: true });
    const deadline = Date.now() + 30_000;
    while ((await harness.queue.counts()).active < total && Date.now() < deadline) await sleep(50);
    const exit = await w.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(w.output()).toContain('handing 4 prompts back to the queue');
    expect(await harness.results(batchId, total)).toEqual([null, null, null, null]);
    for (let index = 0; index < total; index++) {
      const job = await harness.queue.queue.getJob(`${batchId}-${index}`);
      expect(['waiting', 'delayed', 'prioritized']).toContain(await job!.getState());
      expect(job!.attemptsMade).toBe(0);
    }
    await harness.store.batches.requestCancel(batchId); // nobody needs 1900 tokens of the tiny model
  });

  it('drains on SIGTERM and exits 0', async () => {
    const w = await worker({ FALCONQ_SHUTDOWN_GRACE_MS: '5000' });
    await sleep(200);
    const exit = await w.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(w.output()).toContain('stopped');
  });
});
