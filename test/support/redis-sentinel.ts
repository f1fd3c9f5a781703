// A Sentinel group for tests: one master, two replicas and three sentinels (quorum 2) on free loopback ports, with
// a short down-after so a killed master is replaced within seconds.
import { Redis } from 'ioredis';
import { waitUntil } from './redis-cluster';
import { startRedisServer, uniquePrefix, type RedisServerProcess } from './redis';

export const SENTINEL_MASTER_NAME = 'falconq';

export interface TestRedisSentinel {
  servers: RedisServerProcess[];
  sentinels: RedisServerProcess[];
  /** REDIS_URL for the apps (auth and TLS only; the master comes from the sentinels). */
  url: string;
  prefix: string;
  /** What the apps need to use this group, besides REDIS_URL and the prefix. */
  env: Record<string, string>;
  /** The server the sentinels name as master now. */
  master(): Promise<RedisServerProcess>;
  /** Waits until the sentinels name a master other than `old` and it answers as a master. */
  waitForNewMaster(old: RedisServerProcess, timeoutMs?: number): Promise<RedisServerProcess>;
  stop(): Promise<void>;
}

export interface TestRedisSentinelOptions {
  /** down-after-milliseconds: how long the master may be unreachable before the sentinels replace it. */
  downAfterMs?: number;
}

async function ask<T>(server: RedisServerProcess, run: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: server.host, port: server.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await run(client);
  } finally {
    client.disconnect();
  }
}

const fieldsOf = (flat: string[]): Record<string, string> => {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
  return fields;
};

export async function startTestRedisSentinel(options: TestRedisSentinelOptions = {}): Promise<TestRedisSentinel> {
  const downAfterMs = options.downAfterMs ?? 1000;
  const master = await startRedisServer();
  const replicas = await Promise.all([0, 1].map(() => startRedisServer({ args: ['--replicaof', master.host, String(master.port)] })));
  const servers = [master, ...replicas];
  const sentinelConfig = [
    `sentinel monitor ${SENTINEL_MASTER_NAME} ${master.host} ${master.port} 2`,
    `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${downAfterMs}`,
    `sentinel failover-timeout ${SENTINEL_MASTER_NAME} ${Math.max(4 * downAfterMs, 3000)}`,
    `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 2`,
  ];
  const sentinels = await Promise.all([0, 1, 2].map(() => startRedisServer({ sentinelConfig })));
  const all = [...servers, ...sentinels];
  const stop = async () => {
    for (const server of all) {
      server.shutdown();
      server.remove();
    }
  };
  try {
    await waitUntil(60_000, 'every sentinel to see 2 replicas in sync and the 2 other sentinels', async () => {
      for (const sentinel of sentinels) {
        const state = await ask(sentinel, async (c) => fieldsOf((await c.call('SENTINEL', 'MASTER', SENTINEL_MASTER_NAME)) as string[])).catch(() => null);
        if (!state || state['num-slaves'] !== '2' || state['num-other-sentinels'] !== '2') return false;
      }
      for (const replica of replicas) {
        const info = await ask(replica, (c) => c.info('replication')).catch(() => '');
        if (!/master_link_status:up/.test(info)) return false;
      }
      return true;
    }, 100);
  } catch (error) {
    await stop();
    throw error;
  }
  const live = new Set(sentinels);
  const current = async (): Promise<RedisServerProcess> => {
    for (const sentinel of live) {
      const address = await ask(sentinel, (c) => c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME) as Promise<[string, string] | null>).catch(() => null);
      const server = address && servers.find((s) => s.port === Number(address[1]));
      if (server) return server;
    }
    throw new Error('no sentinel named a master');
  };
  return {
    servers,
    sentinels,
    url: `redis://${master.address}`,
    prefix: uniquePrefix(),
    env: { FALCONQ_REDIS_SENTINELS: sentinels.map((s) => s.address).join(','), FALCONQ_REDIS_SENTINEL_NAME: SENTINEL_MASTER_NAME },
    master: current,
    waitForNewMaster: async (old, timeoutMs = 60_000) => {
      let promoted: RedisServerProcess | undefined;
      await waitUntil(timeoutMs, `the sentinels to replace the master ${old.address}`, async () => {
        const candidate = await current().catch(() => undefined);
        if (!candidate || candidate.port === old.port) return false;
        const role = await ask(candidate, (c) => c.info('replication')).catch(() => '');
        if (/role:master/.test(role)) promoted = candidate;
        return promoted !== undefined;
      });
      return promoted!;
    },
    stop,
  };
}
