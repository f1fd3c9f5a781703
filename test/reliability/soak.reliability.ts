// A short soak: a few thousand prompts through the api and two workers on the tiny model. Nothing may be lost or
// duplicated, and no process may grow without bound (RSS before and after is reported).
import { startApi, type ApiProcess } from '../support/api-process';
import { startTestRedis, type TestRedis } from '../support/redis';
import { tinyModelDir } from '../support/tiny-model';
import { rssOf, startWorker, type WorkerProcess } from '../support/worker-process';
import { mib, reportFigures } from '../support/figures';
import { QueueHarness, sleep } from '../support/queue-harness';

const SOAK_PROMPTS = Number(process.env.FALCONQ_SOAK_PROMPTS ?? 3000);
const BATCHES = 3;

describe('soak', () => {
  let redis: TestRedis;
  let api: ApiProcess;
  let workers: WorkerProcess[];
  let harness: QueueHarness;

  beforeAll(async () => {
    const modelDir = await tinyModelDir();
    redis = await startTestRedis();
    harness = QueueHarness.open(redis.url, redis.prefix);
    const options = { redisUrl: redis.url, prefix: redis.prefix, modelDir };
    [api, ...workers] = await Promise.all([
      startApi(options),
      startWorker({ ...options, slots: 16 }),
      startWorker({ ...options, slots: 16 }),
    ]);
  });
  afterAll(async () => {
    await Promise.all((workers ?? []).map((w) => w.kill()));
    await api?.stop();
    await harness?.close();
    await redis?.stop();
  });

  async function submit(prompts: string[]): Promise<string> {
    const response = await fetch(`${api.url}/batches`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompts, max_new_tokens: 4, ignore_eos: true }),
    });
    const body = (await response.json()) as { id: string };
    if (response.status !== 200) throw new Error(`submit: ${response.status} ${JSON.stringify(body)}`);
    return body.id;
  }

  async function waitCompleted(ids: string[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const id of ids) {
      for (;;) {
        const batch = (await (await fetch(`${api.url}/batches/${id}`)).json()) as { status: string };
        if (batch.status === 'completed') break;
        if (['failed', 'expired', 'cancelled'].includes(batch.status)) throw new Error(`${id} ended ${batch.status}`);
        if (Date.now() > deadline) throw new Error(`${id} still ${batch.status}`);
        await sleep(250);
      }
    }
  }

  const rss = () => ({ api: mib(rssOf(api.pid)), workers: workers.map((w) => mib(w.rssBytes())) });

  it(`${SOAK_PROMPTS} prompts in ${BATCHES} concurrent batches: all complete exactly once; RSS of every process reported`, async () => {
    // Warm-up so "before" measures a process that has loaded and run the model, not a fresh one.
    await waitCompleted([await submit(Array.from({ length: 100 }, (_, i) => `warm ${i}`))], 60_000);
    const before = rss();
    const perBatch = Math.ceil(SOAK_PROMPTS / BATCHES);
    const started = Date.now();
    const ids = await Promise.all(Array.from({ length: BATCHES }, (_, b) => submit(Array.from({ length: perBatch }, (_, i) => `Soak ${b}-${i}: continue the sentence`))));
    await waitCompleted(ids, 540_000);
    const seconds = (Date.now() - started) / 1000;
    const after = rss();

    let duplicates = 0;
    for (const id of ids) {
      const batch = (await (await fetch(`${api.url}/batches/${id}`)).json()) as { request_counts: { total: number; completed: number; failed: number } };
      expect(batch.request_counts).toEqual({ total: perBatch, completed: perBatch, failed: 0 });
      const results = await harness.results(id, perBatch);
      expect(results.filter((r) => r?.status === 'succeeded')).toHaveLength(perBatch);
      expect(await harness.storedResultCount(id)).toBe(perBatch);
      duplicates += results.filter((r) => (r?.attempts ?? 1) > 1).length;
    }
    const queue = await harness.queue.counts();
    expect(queue.waiting + queue.prioritized + queue.active + queue.delayed + queue.failed).toBe(0);
    reportFigures('soak', {
      prompts: perBatch * BATCHES,
      batches: BATCHES,
      maxNewTokens: 4,
      seconds,
      itemsPerSecond: Math.round(((perBatch * BATCHES) / seconds) * 10) / 10,
      retriedPrompts: duplicates,
      duplicateResultsIgnored: workers.reduce((sum, w) => sum + (w.output().match(/duplicate result ignored:/g)?.length ?? 0), 0),
      rssMiBBefore: before,
      rssMiBAfter: after,
      redisUsedMemory: await harness.usedMemory(),
    });
  });
});
