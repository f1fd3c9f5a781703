// A Redis Cluster for tests: 3 masters and 3 replicas on free loopback ports, created with `redis-cli --cluster
// create`, with a short node timeout so a killed master's replica takes over within seconds.
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { sleep } from './queue-harness';
import { startRedisServer, uniqueHashTagPrefix, type RedisServerProcess } from './redis';

export interface TestRedisCluster {
  nodes: RedisServerProcess[];
  /** REDIS_URL for the apps (auth and TLS only; the topology comes from `env`). */
  url: string;
  /** A hash-tag prefix: all of falconq's keys in one slot. */
  prefix: string;
  /** What the apps need to use this cluster, besides REDIS_URL and the prefix. */
  env: Record<string, string>;
  seeds: { host: string; port: number }[];
  /** The master serving `key`'s slot now. */
  masterFor(key: string): Promise<RedisServerProcess>;
  /** Waits until `key`'s slot is served by a master other than `old` and the cluster is ok again. */
  waitForNewMaster(key: string, old: RedisServerProcess, timeoutMs?: number): Promise<RedisServerProcess>;
  stop(): Promise<void>;
}

export interface TestRedisClusterOptions {
  /** cluster-node-timeout: how long a master may be unreachable before its replica takes over. */
  nodeTimeoutMs?: number;
}

async function withNode<T>(nodes: RedisServerProcess[], skip: Set<number>, run: (client: Redis) => Promise<T>): Promise<T> {
  let lastError: unknown;
  for (const node of nodes) {
    if (skip.has(node.port)) continue;
    const client = new Redis({ host: node.host, port: node.port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await run(client);
    } catch (error) {
      lastError = error;
    } finally {
      client.disconnect();
    }
  }
  throw new Error(`no cluster node answered: ${String(lastError)}`);
}

export async function startTestRedisCluster(options: TestRedisClusterOptions = {}): Promise<TestRedisCluster> {
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const nodes = await Promise.all(Array.from({ length: 6 }, () => startRedisServer({
    args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeoutMs)],
  })));
  const killed = new Set<number>();
  const stop = async () => {
    for (const node of nodes) {
      node.shutdown();
      node.remove();
    }
  };
  try {
    const create = spawnSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8' });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}\n${create.stderr}`);
    await waitUntil(60_000, 'the cluster to be ok on every node with every replica in sync', async () => {
      for (const node of nodes) {
        const ok = await withNode([node], new Set(), async (client) => {
          const info = await client.cluster('INFO');
          if (!/cluster_state:ok/.test(info)) return false;
          const replication = await client.info('replication');
          return /role:master/.test(replication) || /master_link_status:up/.test(replication);
        }).catch(() => false);
        if (!ok) return false;
      }
      return true;
    });
  } catch (error) {
    await stop();
    throw error;
  }

  const slotsOf = () => withNode(nodes, killed, (client) => client.cluster('SLOTS'));
  const masterFor = async (key: string): Promise<RedisServerProcess> => {
    const slot = await withNode(nodes, killed, (client) => client.cluster('KEYSLOT', key));
    const range = (await slotsOf()).find(([start, end]) => slot >= start && slot <= end);
    const port = range?.[2]?.[1];
    const node = nodes.find((n) => n.port === Number(port));
    if (!node) throw new Error(`no master for slot ${slot}`);
    return node;
  };
  const seeds = nodes.map((n) => ({ host: n.host, port: n.port }));
  return {
    nodes,
    url: `redis://${nodes[0].address}`,
    prefix: uniqueHashTagPrefix(),
    env: { FALCONQ_REDIS_CLUSTER_NODES: nodes.map((n) => n.address).join(',') },
    seeds,
    masterFor,
    waitForNewMaster: async (key, old, timeoutMs = 60_000) => {
      killed.add(old.port);
      let master: RedisServerProcess | undefined;
      await waitUntil(timeoutMs, `a replica to take over ${key}'s slot from ${old.address}`, async () => {
        const candidate = await masterFor(key).catch(() => undefined);
        if (!candidate || candidate.port === old.port) return false;
        const ok = await withNode([candidate], new Set(), async (client) => /cluster_state:ok/.test(await client.cluster('INFO'))).catch(() => false);
        if (ok) master = candidate;
        return ok;
      });
      return master!;
    },
    stop,
  };
}

export async function waitUntil(timeoutMs: number, what: string, check: () => Promise<boolean>, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
