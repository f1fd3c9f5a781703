// Engine supervision in the worker: the engine ends under a running worker (as when its thread dies). The worker must
// stop taking jobs, hand the ones it holds back without spending their attempts, and exit non-zero for a restart.
import { join } from 'node:path';
import type { GenerationEngine as Engine } from '@app/engine';
import { loadWorkerConfig } from '../../apps/worker/src/config/worker-config';
import { RedisWorkerStore } from '../../apps/worker/src/redis-worker-store';
import { ENGINE_GONE_EXIT_CODE, WorkerRuntime } from '../../apps/worker/src/worker-runtime';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { QueueHarness, promptsOf, sleep } from '../support/queue-harness';

// The compiled engine runs in its own worker_thread, as in production (npm test builds dist first).
const COMPILED_ENGINE = join(__dirname, '..', '..', 'dist', 'libs', 'engine', 'src', 'engine.js');

jest.setTimeout(120_000);

describe('worker engine supervision', () => {
  let redis: TestRedis;
  let harness: QueueHarness;
  let GenerationEngine: typeof Engine;

  beforeAll(async () => {
    ({ GenerationEngine } = (await import(COMPILED_ENGINE)) as { GenerationEngine: typeof Engine });
    redis = await startTestRedis();
    harness = QueueHarness.open(redis.url, redis.prefix);
  });
  afterAll(async () => {
    await harness?.close();
    await redis?.stop();
  });

  it('stops consuming, hands its jobs back without spending attempts, and exits non-zero when its engine is gone', async () => {
    const modelDir = await tinyModelDir();
    const config = loadWorkerConfig({ MODEL_DIR: modelDir, REDIS_URL: redis.url, FALCONQ_REDIS_PREFIX: redis.prefix, FALCONQ_SLOTS: '2', FALCONQ_WORKER_ID: 'engine-gone' });
    const engine = await GenerationEngine.start({ modelDir, executionProvider: 'cpu', slots: config.slots });
    const runtime = new WorkerRuntime(config, engine, new RedisWorkerStore(config));
    const exited = new Promise<number>((resolve) => (runtime.exit = resolve));
    await runtime.onApplicationBootstrap();

    const total = 6;
    const batchId = await harness.submitBatch(promptsOf(total, 'Long'), { maxNewTokens: 1500, ignoreEos: true });
    while ((await harness.queue.counts()).active < 2) await sleep(50);
    await engine.close(); // the runtime did not ask for this: to it, the engine is gone

    expect(await exited).toBe(ENGINE_GONE_EXIT_CODE);
    expect(await harness.results(batchId, total)).toEqual(Array(total).fill(null));
    for (let index = 0; index < total; index++) {
      const job = await harness.queue.queue.getJob(`${batchId}-${index}`);
      expect(['waiting', 'prioritized', 'delayed']).toContain(await job!.getState());
      expect(job!.attemptsMade).toBe(0);
    }
    expect((await harness.store.batches.get(batchId))?.status).toBe('in_progress');
    await harness.cancel(batchId);
  });
});
