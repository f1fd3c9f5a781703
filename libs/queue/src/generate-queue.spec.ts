import { Worker } from 'bullmq';
import { GENERATE_QUEUE, generateJobId, jobOf, type GenerateJobData } from '@app/contracts';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { GenerateQueue, queueConnection, queueConnectionFor } from './index';

const params = {
  maxNewTokens: 4, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: [],
  numReturnSequences: 1, returnFullText: false, ignoreEos: false, truncate: false,
};

function item(batchId: string, index: number, kind: GenerateJobData['kind'] = 'batch'): GenerateJobData {
  return jobOf(batchId, 't', { index, customId: `c-${index}`, params }, kind);
}

describe('GenerateQueue', () => {
  let redis: TestRedis;
  let queue: GenerateQueue;

  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });
  beforeEach(() => {
    queue = new GenerateQueue({ redisUrl: redis.url, prefix: `${redis.prefix}-${Math.random().toString(36).slice(2)}` });
  });
  afterEach(async () => {
    await queue.close();
  });

  it('enqueues one job per item and ignores a second enqueue of the same items', async () => {
    const items = Array.from({ length: 5 }, (_, i) => item('b1', i));
    await queue.enqueue(items);
    await queue.enqueue(items);
    const counts = await queue.counts();
    expect(counts.waiting + counts.prioritized).toBe(5);
    const job = await queue.queue.getJob(generateJobId('b1', 3));
    expect(job?.data.customId).toBe('c-3');
    expect(job?.opts.attempts).toBe(3);
  });

  it('hands online requests out before batch items', async () => {
    await queue.enqueue([item('batch', 0), item('batch', 1)]);
    await queue.enqueue([item('online', 0, 'online')]);
    const order: string[] = [];
    const worker = new Worker<GenerateJobData>(GENERATE_QUEUE, async (job) => void order.push(job.id!), {
      connection: queueConnection(redis.url), prefix: queue.queue.opts.prefix, concurrency: 1,
    });
    await new Promise<void>((resolve) => worker.on('completed', () => order.length === 3 && resolve()));
    await worker.close();
    expect(order[0]).toBe(generateJobId('online', 0));
  });

  it('removes the pending items of a batch and leaves other batches alone', async () => {
    await queue.enqueue(Array.from({ length: 4 }, (_, i) => item('cancel-me', i)));
    await queue.enqueue([item('keep', 0)]);
    expect(await queue.takeBackNotStarted('cancel-me', [0, 1, 2, 3])).toEqual([0, 1, 2, 3]);
    expect(await queue.queue.getJob(generateJobId('cancel-me', 0))).toBeUndefined();
    expect(await queue.queue.getJob(generateJobId('keep', 0))).toBeDefined();
  });
});

describe('queueConnectionFor', () => {
  it('passes Sentinel topology to BullMQ with the resilient options', () => {
    const owned = queueConnectionFor({
      redisUrl: 'redis://:secret@ignored:6379', prefix: 'falconq',
      redis: { url: 'redis://:secret@ignored:6379', sentinels: [{ host: 's1', port: 26379 }], sentinelName: 'mymaster' },
    });
    expect(owned.connection).toMatchObject({ sentinels: [{ host: 's1', port: 26379 }], name: 'mymaster', password: 'secret', maxRetriesPerRequest: null });
  });

  it('refuses a Cluster prefix without a hash tag, naming it', () => {
    expect(() => queueConnectionFor({ redisUrl: 'redis://h:1', prefix: 'falconq', redis: { url: 'redis://h:1', clusterNodes: [{ host: 'h', port: 1 }] } })).toThrow('"falconq"');
  });
});
