import { Redis } from 'ioredis';
import { startTestRedis, type TestRedis } from '../../../test/support/redis';
import { RedisRateLimiter, RedisResultsStore, checkMaxmemoryPolicy, createRedisClient, parseHostPortList, redisConnectionOptions } from '../src';
import { describeResultsStoreContract, newBatch, succeeded } from './results-store.contract';

let redis: TestRedis;
const clients: Redis[] = [];
let counter = 0;

beforeAll(async () => {
  redis = await startTestRedis();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit().catch(() => undefined)));
  await redis.stop();
});

function client(): Redis {
  const c = new Redis(redis.url);
  clients.push(c);
  return c;
}

function makeStore(prefix = `${redis.prefix}-${counter++}`, retentionSeconds = 3600) {
  const connection = client();
  const store = new RedisResultsStore(connection, {
    prefix, retentionSeconds, fileRetentionSeconds: 0, idempotencySeconds: 600, createSubscriber: () => client(),
  });
  return { store, connection };
}

describeResultsStoreContract('Redis', async () => {
  const { store } = makeStore();
  return { store, cleanup: () => store.close() };
});

describe('RedisResultsStore specifics', () => {
  it('puts the retention TTL on every key of a finished batch and none while it runs', async () => {
    const prefix = `${redis.prefix}-ttl`;
    const { store, connection } = makeStore(prefix, 120);
    const batch = await store.createBatch(newBatch({}, 1));
    await store.markBatchInProgress(batch.id);
    expect(await connection.ttl(store.keys.batch(batch.id))).toBe(-1);
    await store.recordResult(succeeded(batch.id, 0));
    for (const key of store.keys.batchKeys(batch.id)) {
      const ttl = await connection.ttl(key);
      expect(ttl).toBeGreaterThan(100);
      expect(ttl).toBeLessThanOrEqual(120);
    }
    await store.close();
  });

  it('uses a batch\'s own retention when it has one', async () => {
    const { store, connection } = makeStore(`${redis.prefix}-own-ttl`, 3600);
    const batch = await store.createBatch(newBatch({ kind: 'online', retentionSeconds: 30 }, 1));
    await store.recordResult(succeeded(batch.id, 0));
    const ttl = await connection.ttl(store.keys.batch(batch.id));
    expect(ttl).toBeGreaterThan(20);
    expect(ttl).toBeLessThanOrEqual(30);
    await store.close();
  });

  it('keeps every key under its prefix', async () => {
    const prefix = `${redis.prefix}-scoped`;
    const { store, connection } = makeStore(prefix);
    const batch = await store.createBatch(newBatch({}, 2));
    await store.recordResult(succeeded(batch.id, 0));
    await store.createFile({ owner: 'a', filename: 'f', purpose: 'batch', content: 'x' });
    await store.recordWorkerHeartbeat('w', {});
    const keys = await connection.keys('*');
    const ours = keys.filter((k) => k.startsWith(`${prefix}:`));
    expect(ours.length).toBeGreaterThan(5);
    expect(keys.filter((k) => k.includes('-scoped') && !k.startsWith(`${prefix}:`))).toEqual([]);
    await store.close();
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

  it('checks maxmemory-policy', async () => {
    const connection = client();
    expect(await checkMaxmemoryPolicy(connection)).toEqual({ ok: true, policy: 'noeviction' });
    await connection.config('SET', 'maxmemory-policy', 'allkeys-lru');
    const check = await checkMaxmemoryPolicy(connection);
    await connection.config('SET', 'maxmemory-policy', 'noeviction');
    expect(check).toMatchObject({ ok: false, policy: 'allkeys-lru', reason: expect.stringContaining('noeviction') });
  });
});

describe('redis connection options', () => {
  it('reads TLS, ACL user, password and db from the URL', () => {
    expect(redisConnectionOptions({ url: 'rediss://app%40x:p%2Fw@cache.example:6380/2' })).toMatchObject({
      host: 'cache.example', port: 6380, username: 'app@x', password: 'p/w', db: 2, tls: { servername: 'cache.example' },
    });
    expect(redisConnectionOptions({ url: 'redis://localhost' })).toMatchObject({ host: 'localhost', port: 6379, tls: undefined });
  });

  it('builds Sentinel options', () => {
    const options = redisConnectionOptions({ url: 'redis://:secret@ignored:1', sentinels: parseHostPortList('s1:26379, s2:26379', 'FALCONQ_REDIS_SENTINELS'), sentinelName: 'mymaster' });
    expect(options).toMatchObject({ name: 'mymaster', password: 'secret', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }] });
  });

  it('refuses bad host lists and schemes with a message naming them', () => {
    expect(() => parseHostPortList('a:1,b', 'FALCONQ_REDIS_CLUSTER_NODES')).toThrow('FALCONQ_REDIS_CLUSTER_NODES: "b" is not host:port');
    expect(() => redisConnectionOptions({ url: 'http://x' })).toThrow('redis:// or rediss://');
  });

  it('connects a plain client', async () => {
    const c = createRedisClient({ url: redis.url });
    expect(await c.ping()).toBe('PONG');
    await c.quit();
  });
});
