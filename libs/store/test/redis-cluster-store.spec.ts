// The store's contract on a Redis Cluster (3 masters, 3 replicas): with a hash-tag prefix every key, every MULTI
// and every Lua script of the store lands in one slot, so all of it runs on a cluster exactly as on one Redis.
import { startTestRedisCluster, type TestRedisCluster } from '../../../test/support/redis-cluster';
import { createRedisClient, redisTopologyOf, type RedisClient } from '@app/redis';
import { RedisStore } from '../src';
import { describeRedisStoreContract } from './redis-store.contract';

let cluster: TestRedisCluster;
const clients: RedisClient[] = [];
let counter = 0;

beforeAll(async () => {
  cluster = await startTestRedisCluster();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.quit().catch(() => undefined)));
  await cluster.stop();
});

function client(): RedisClient {
  const c = createRedisClient({ url: cluster.url, clusterNodes: cluster.seeds });
  clients.push(c);
  return c;
}

describeRedisStoreContract('Redis Cluster', () => {
  const connection = client();
  const store = new RedisStore(connection, {
    prefix: `{${cluster.prefix.slice(1, -1)}-${counter++}}`, fileRetentionSeconds: 0, createSubscriber: () => client(),
  });
  return { store, connection, client };
});

it('refuses a cluster prefix without a hash tag', async () => {
  expect(() => redisTopologyOf({ REDIS_URL: cluster.url, FALCONQ_REDIS_PREFIX: 'falconq', FALCONQ_REDIS_CLUSTER_NODES: cluster.env.FALCONQ_REDIS_CLUSTER_NODES }))
    .toThrow('FALCONQ_REDIS_PREFIX: with FALCONQ_REDIS_CLUSTER_NODES the prefix must start with a hash tag');
});
