import { hashKey } from './api-keys';
import { loadApiConfig } from './api-config';

describe('loadApiConfig', () => {
  const base = { MODEL_DIR: '/models/tiny' };

  it('fills defaults', () => {
    const config = loadApiConfig(base);
    expect(config).toMatchObject({ port: 3000, host: '0.0.0.0', prefix: 'falconq', redis: { url: 'redis://127.0.0.1:6379' } });
    expect(config.keys.size).toBe(0);
    expect([...config.openRoutes]).toEqual(['health']);
    expect(config.limits).toMatchObject({ maxLines: 50_000, rateLimitPerMinute: 600, maxBatchesInFlight: 20 });
  });

  it('keeps keys only as hashes, with tenants and admin flags', () => {
    const config = loadApiConfig({ ...base, FALCONQ_API_KEYS: 'alpha-key-1:team-a, beta-key-22:team-b:admin,gamma-key-333', FALCONQ_ADMIN_KEYS: 'ops-key-4444:ops' });
    expect(config.keys.get(hashKey('alpha-key-1'))).toMatchObject({ tenant: 'team-a', admin: false });
    expect(config.keys.get(hashKey('beta-key-22'))).toMatchObject({ tenant: 'team-b', admin: true });
    expect(config.keys.get(hashKey('gamma-key-333'))?.tenant).toMatch(/^key-[0-9a-f]{12}$/);
    expect(config.keys.get(hashKey('ops-key-4444'))).toMatchObject({ tenant: 'ops', admin: true });
    expect(JSON.stringify([...config.keys.entries()])).not.toContain('alpha-key-1');
  });

  it('reads Redis Sentinel and Cluster settings', () => {
    expect(loadApiConfig({ ...base, REDIS_URL: 'rediss://u:p@h:6380', FALCONQ_REDIS_SENTINELS: 's1:26379,s2:26379', FALCONQ_REDIS_SENTINEL_NAME: 'main' }).redis)
      .toMatchObject({ url: 'rediss://u:p@h:6380', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], sentinelName: 'main' });
    expect(loadApiConfig({ ...base, FALCONQ_REDIS_CLUSTER_NODES: 'n1:7000', FALCONQ_REDIS_PREFIX: '{fq}' }).redis.clusterNodes).toEqual([{ host: 'n1', port: 7000 }]);
  });

  it.each([
    [{ PORT: 'eighty' }, 'PORT'],
    [{ REDIS_URL: 'localhost:6379' }, 'REDIS_URL'],
    [{ FALCONQ_MAX_LINES: '0' }, 'FALCONQ_MAX_LINES'],
    [{ FALCONQ_RATE_LIMIT_PER_MINUTE: '-1' }, 'FALCONQ_RATE_LIMIT_PER_MINUTE'],
    [{ FALCONQ_OPEN_ROUTES: 'health,dashboard' }, 'FALCONQ_OPEN_ROUTES'],
    [{ FALCONQ_API_KEYS: 'short' }, 'FALCONQ_API_KEYS'],
    [{ FALCONQ_API_KEYS: 'long-enough-key:bad tenant' }, 'FALCONQ_API_KEYS'],
    [{ FALCONQ_API_KEYS: 'long-enough-key:t:root' }, 'FALCONQ_API_KEYS'],
    [{ FALCONQ_API_KEYS: 'long-enough-key:a,long-enough-key:b' }, 'FALCONQ_API_KEYS'],
    [{ FALCONQ_REDIS_SENTINELS: 's1:26379' }, 'FALCONQ_REDIS_SENTINEL_NAME'],
    [{ FALCONQ_REDIS_SENTINELS: 's1', FALCONQ_REDIS_SENTINEL_NAME: 'm' }, 'FALCONQ_REDIS_SENTINELS'],
    [{ FALCONQ_REDIS_CLUSTER_NODES: 'n1:7000' }, 'FALCONQ_REDIS_PREFIX'],
    [{ FALCONQ_WEBHOOK_URL: 'ftp://hooks.example' }, 'FALCONQ_WEBHOOK_URL'],
    [{ FALCONQ_WEBHOOK_URL: 'https://hooks.example/in' }, 'FALCONQ_WEBHOOK_SECRET'],
    [{ FALCONQ_WEBHOOK_URL: 'https://hooks.example/in', FALCONQ_WEBHOOK_SECRET: 'whsec_c2hvcnQ=' }, 'FALCONQ_WEBHOOK_SECRET'],
    [{ FALCONQ_WEBHOOK_SECRET: `whsec_${Buffer.alloc(32, 1).toString('base64')}` }, 'FALCONQ_WEBHOOK_SECRET'],
  ])('names the variable of a bad value (%j)', (bad, name) => {
    expect(() => loadApiConfig({ ...base, ...bad })).toThrow(name);
  });

  it('never puts a key into its error messages', () => {
    expect(() => loadApiConfig({ ...base, FALCONQ_API_KEYS: 'secret-value-1:t:root' })).toThrow(/^(?!.*secret-value-1)/s);
  });

  it('reads the webhook endpoint and its whsec_ secret; none without a URL', () => {
    expect(loadApiConfig(base).webhooks).toBeNull();
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    expect(loadApiConfig({ ...base, FALCONQ_WEBHOOK_URL: 'https://hooks.example/in', FALCONQ_WEBHOOK_SECRET: secret }).webhooks)
      .toEqual({ url: 'https://hooks.example/in', secret, retryMs: 5000, maxAttempts: 12, timeoutMs: 10_000 });
  });

  it('requires MODEL_DIR', () => {
    expect(() => loadApiConfig({})).toThrow('MODEL_DIR');
  });
});
