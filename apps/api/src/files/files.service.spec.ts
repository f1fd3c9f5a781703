// A batch output file's metadata against a real Redis: its size is measured once per state of the results, not by
// building the whole file on every GET.
import { Redis } from 'ioredis';
import { RedisStore, type BatchItemInput } from '@app/store';
import { startTestRedis, type TestRedis } from '../../../../test/support/redis';
import type { ApiConfig } from '../config/api-config';
import { FilesService } from './files.service';

const ADMIN = { tenant: 'ops', admin: true, keyId: 'ops' };
const params = { maxNewTokens: 2, doSample: false, temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, stop: [], numReturnSequences: 1, returnFullText: false, ignoreEos: false, truncate: false };

describe('FilesService: batch output file metadata', () => {
  let redis: TestRedis;
  let connection: Redis;
  let store: RedisStore;
  let files: FilesService;

  beforeAll(async () => {
    redis = await startTestRedis();
    connection = new Redis(redis.url);
    store = new RedisStore(connection, { prefix: redis.prefix, fileRetentionSeconds: 0, createSubscriber: () => new Redis(redis.url) });
    files = new FilesService(store, { retention: { batchSeconds: 0, fileSeconds: 0 } } as ApiConfig);
  });
  afterAll(async () => {
    await store.close();
    await connection.quit();
    await redis.stop();
  });

  const commandsProcessed = async () => Number(/total_commands_processed:(\d+)/.exec(await connection.info('stats'))![1]);

  it('measures the size once, answers later GETs without reading the results, and measures again after a change', async () => {
    const total = 3000;
    const items: BatchItemInput[] = Array.from({ length: total }, (_, index) => ({ index, customId: `req-${index}`, prompt: 'p', params }));
    const outcome = await store.batches.create({ id: 'batch_00000000000000000000f11e', kind: 'openai', owner: 'ops', endpoint: '/v1/completions', model: 'tiny',
      completionWindow: '24h', completionWindowMs: 86_400_000, metadata: null, inputFileId: null, items, retentionSeconds: 0 });
    if (!('created' in outcome)) throw new Error('not created');
    const batch = outcome.created;
    await store.batches.markInProgress(batch.id);
    for (let index = 0; index < total; index++) {
      await store.results.record({ batchId: batch.id, index, customId: `req-${index}`, outcome: 'failed', attempts: 1, finishedAt: 1, error: { code: 'worker_failed', message: 'x' } });
    }
    const first = await files.describe(ADMIN, batch.errorFileId);
    let bytes = 0;
    for await (const chunk of await files.content(ADMIN, batch.errorFileId)) bytes += Buffer.byteLength(chunk);
    expect(first.bytes).toBe(bytes);

    const before = await commandsProcessed();
    const second = await files.describe(ADMIN, batch.errorFileId);
    // The INFO read itself, the batch, and the remembered size: nothing per result (building reads 3 pages of them).
    expect((await commandsProcessed()) - before).toBeLessThanOrEqual(3);
    expect(second.bytes).toBe(first.bytes);

    // retry-failed reopens the items: the file changes, and so does its measured size once it is final again.
    await store.batches.reopenFailedItems(batch.id);
    await store.results.record({ batchId: batch.id, index: 0, customId: 'req-0', outcome: 'failed', attempts: 2, finishedAt: 1, error: { code: 'worker_failed', message: 'a longer message this time' } });
    for (let index = 1; index < total; index++) {
      await store.results.record({ batchId: batch.id, index, customId: `req-${index}`, outcome: 'failed', attempts: 1, finishedAt: 1, error: { code: 'worker_failed', message: 'x' } });
    }
    expect((await files.describe(ADMIN, batch.errorFileId)).bytes).toBe(first.bytes + 'a longer message this time'.length - 1);
  });
});
