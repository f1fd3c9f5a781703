// The store on one Redis: the contract every topology passes, and what only one Redis can show (every key under
// its prefix, script reloads after SCRIPT FLUSH, staging keys, the rate limiter).
import type { Redis } from 'ioredis';
import { useTestRedis } from '../../../test/support/redis';
import { FILE_CHUNK_BYTES, RedisRateLimiter, RedisStore, type CreateBatchOptions, type NewBatch } from '../src';
import { createdBatch, describeRedisStoreContract, newBatch, runningBatch, succeeded } from './redis-store.contract';

const redis = useTestRedis();
let counter = 0;
const client = (): Redis => redis.client();

function makeStore(prefix = `${redis.prefix}-${counter++}`) {
  const connection = client();
  const store = new RedisStore(connection, { prefix, fileRetentionSeconds: 0, createSubscriber: () => client() });
  return { store, connection, prefix };
}

describeRedisStoreContract('Redis', () => ({ ...makeStore(), client }));

describe('RedisStore on one Redis', () => {
  let store: RedisStore;
  let connection: Redis;

  beforeEach(() => {
    ({ store, connection } = makeStore());
  });
  afterEach(async () => {
    await store.close();
  });

  const create = (batch: NewBatch, options?: CreateBatchOptions) => createdBatch(store, batch, options);
  const startedBatch = (overrides: Partial<NewBatch> = {}, size = 3) => runningBatch(store, overrides, size);

  it('claims an Idempotency-Key only with a created batch: a refused creation leaves the key free', async () => {
    await create(newBatch({ owner: 'tenant-full' }, 1), { maxInFlight: 1 });
    const idempotency = { owner: 'tenant-full', key: 'k-refused', fingerprint: 'f', ttlSeconds: 60 };
    expect(await store.batches.create(newBatch({ owner: 'tenant-full' }, 1), { maxInFlight: 1, idempotency })).toEqual({ atInFlightLimit: 1 });
    expect(await store.idempotency.holder('tenant-full', 'k-refused')).toBeNull();
    const staged = await connection.keys(`${store.batches.keys.prefix}:staging:*`);
    expect(staged).toEqual([]);
  });

  it('keeps every key under its prefix', async () => {
    const { store: scoped, connection: c, prefix } = makeStore(`${redis.prefix}-scoped`);
    const batch = await scoped.batches.create(newBatch({}, 2));
    if (!('created' in batch)) throw new Error('not created');
    await scoped.results.record(succeeded(batch.created.id, 0));
    await scoped.files.create({ owner: 'a', filename: 'f', purpose: 'batch', content: 'x' });
    await scoped.workers.recordHeartbeat('w', {});
    const keys = await c.keys('*');
    expect(keys.filter((k) => k.startsWith(`${prefix}:`)).length).toBeGreaterThan(5);
    expect(keys.filter((k) => k.includes('-scoped') && !k.startsWith(`${prefix}:`))).toEqual([]);
    await scoped.close();
  });

  it('keeps a file in about its own size of Redis memory (its chunks fit the allocator\'s size classes)', async () => {
    const content = 'x'.repeat(4 * FILE_CHUNK_BYTES);
    const file = await store.files.create({ owner: 'a', filename: 'f', purpose: 'batch', content });
    const used = Number(await connection.memory('USAGE', store.batches.keys.fileChunks(file.id)));
    expect(used / file.bytes).toBeLessThan(1.05);
  });

  it('counts requests per window across limiter instances (as api replicas would)', async () => {
    const a = new RedisRateLimiter(client(), `${redis.prefix}-rl`);
    const b = new RedisRateLimiter(client(), `${redis.prefix}-rl`);
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await (i % 2 ? a : b).consume('key1', 3, 60_000));
    expect(outcomes.map((o) => o.allowed)).toEqual([true, true, true, false]);
    expect(outcomes[3].retryAfterMs).toBeGreaterThan(0);
    expect(outcomes[3].retryAfterMs).toBeLessThanOrEqual(60_000);
    expect((await a.consume('key2', 3)).allowed).toBe(true);
  });

  it('limits requests in any window, not per calendar window, and says exactly when to retry', async () => {
    const limiter = new RedisRateLimiter(client(), `${redis.prefix}-sliding`);
    const windowMs = 1500;
    type Outcome = Awaited<ReturnType<RedisRateLimiter['consume']>>;
    const first: Outcome[] = [];
    for (let i = 0; i < 3; i++) first.push(await limiter.consume('k', 3, windowMs));
    expect(first.map((o) => [o.allowed, o.remaining])).toEqual([[true, 2], [true, 1], [true, 0]]);
    // A burst right after, wherever a calendar window boundary falls, is refused: at most 3 in any 1.5 s.
    const burst: Outcome[] = [];
    for (let i = 0; i < 5; i++) burst.push(await limiter.consume('k', 3, windowMs));
    expect(burst.every((o) => !o.allowed)).toBe(true);
    // The wait is counted from the oldest accepted request, not from the start of a window, and never grows.
    expect(burst[0].retryAfterMs).toBeGreaterThan(0);
    expect(burst[0].retryAfterMs).toBeLessThanOrEqual(windowMs);
    expect(burst[4].retryAfterMs).toBeLessThanOrEqual(burst[0].retryAfterMs);
    // Refused requests were not counted: after the advertised wait a request goes through.
    await new Promise((resolve) => setTimeout(resolve, burst[4].retryAfterMs));
    expect((await limiter.consume('k', 3, windowMs)).allowed).toBe(true);
  });

  it('loads its scripts once and runs them again after Redis forgot them', async () => {
    const batch = await startedBatch({}, 2);
    await store.results.record(succeeded(batch.id, 0));
    await connection.script('FLUSH');
    expect(await store.results.record(succeeded(batch.id, 1))).toBe('recorded');
    expect((await store.batches.get(batch.id))?.status).toBe('completed');
  });

});
