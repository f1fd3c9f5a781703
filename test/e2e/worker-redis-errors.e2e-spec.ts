// A worker says when it loses Redis (its store connection's errors were silenced), once per distinct error and
// interval rather than once per reconnect attempt, and carries on once Redis is back.
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { startWorker, type WorkerProcess } from '../support/worker-process';
import { QueueHarness, sleep } from '../support/queue-harness';

jest.setTimeout(120_000);

describe('worker Redis errors', () => {
  let redis: TestRedis;
  let worker: WorkerProcess | undefined;

  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await worker?.kill();
    await redis?.stop();
  });

  it('logs its store connection errors while Redis is down, and completes work once it is back', async () => {
    worker = await startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir: await tinyModelDir(), slots: 2 });
    await redis.down();
    try {
      while (!/redis connection error/.test(worker.output())) await sleep(100);
    } finally {
      await redis.up();
    }
    const logged = worker.output().match(/redis connection error: [^\n]*/g) ?? [];
    expect(logged.length).toBeGreaterThan(0);
    // Repeats of one message within the interval are not logged again: fewer lines than reconnect attempts.
    expect(new Set(logged).size).toBe(logged.length);

    const harness = QueueHarness.open(redis.url, redis.prefix);
    try {
      const batchId = await harness.submitBatch(['after the outage'], { maxNewTokens: 2 });
      expect((await harness.waitForFinal(batchId, 60_000)).status).toBe('completed');
    } finally {
      await harness.close();
    }
  });
});
