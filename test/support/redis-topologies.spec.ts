import { Cluster, Redis } from 'ioredis';
import { startTestRedisCluster } from './redis-cluster';
import { SENTINEL_MASTER_NAME, startTestRedisSentinel } from './redis-sentinel';

it('starts a 3+3 Redis Cluster whose hash-tagged keys move to a replica when their master is killed', async () => {
  const cluster = await startTestRedisCluster();
  const client = new Cluster(cluster.seeds, { retryDelayOnFailover: 200, maxRedirections: 100 });
  client.on('error', () => undefined);
  try {
    const key = `${cluster.prefix}:probe`;
    await client.set(key, 'before');
    const master = await cluster.masterFor(key);
    master.kill();
    const promoted = await cluster.waitForNewMaster(key, master);
    expect(promoted.port).not.toBe(master.port);
    expect(await client.get(key)).toBe('before');
  } finally {
    client.disconnect();
    await cluster.stop();
  }
});

it('starts a Sentinel group (1 master, 2 replicas, 3 sentinels) that promotes a replica when the master is killed', async () => {
  const group = await startTestRedisSentinel();
  const sentinels = group.sentinels.map((s) => ({ host: s.host, port: s.port }));
  const client = new Redis({ sentinels, name: SENTINEL_MASTER_NAME, maxRetriesPerRequest: null });
  client.on('error', () => undefined);
  try {
    await client.set(`${group.prefix}:probe`, 'before');
    await client.wait(2, 5000);
    const master = await group.master();
    master.kill();
    const promoted = await group.waitForNewMaster(master);
    expect(promoted.port).not.toBe(master.port);
    expect(await client.get(`${group.prefix}:probe`)).toBe('before');
  } finally {
    client.disconnect();
    await group.stop();
  }
});
