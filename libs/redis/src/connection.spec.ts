import type { Redis } from 'ioredis';
import { useTestRedis } from '../../../test/support/redis';
import { checkMaxmemoryPolicy, createRedisClient, parseHostPortList, redisConnectionOptions } from './index';

const redis = useTestRedis();
const client = (): Redis => redis.client();

describe('server checks', () => {
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
