// One Redis connection factory for the queue, the store and both apps: plain, TLS (rediss://), ACL user/password in
// the URL, Sentinel or Cluster. The apps read their environment in their own config module and pass the result here.
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';

/** A connected client: one Redis or a Cluster. */
export type RedisClient = Redis | Cluster;

export interface RedisHostPort {
  host: string;
  port: number;
}

export interface RedisConnectionConfig {
  /** redis://[user:password@]host:port[/db] or rediss://... (TLS). With Sentinel or Cluster it still gives auth and TLS. */
  url: string;
  /** Sentinel mode: the sentinels and the monitored master's name. */
  sentinels?: RedisHostPort[];
  sentinelName?: string;
  /** Cluster mode: seed nodes. Use a key prefix with a hash tag (e.g. `{falconq}`) so multi-key scripts work. */
  clusterNodes?: RedisHostPort[];
}

/** "host:port,host:port" -> list; throws naming the bad entry. */
export function parseHostPortList(value: string, what: string): RedisHostPort[] {
  return value.split(',').map((entry) => entry.trim()).filter(Boolean).map((entry) => {
    const match = /^([^:\s]+):(\d{1,5})$/.exec(entry);
    if (!match) throw new Error(`${what}: "${entry}" is not host:port`);
    return { host: match[1], port: Number(match[2]) };
  });
}

/**
 * ioredis options for a standalone or Sentinel connection (what BullMQ's `connection` takes too).
 * `extra` is merged last (BullMQ workers need `maxRetriesPerRequest: null`).
 */
export function redisConnectionOptions(config: RedisConnectionConfig, extra: RedisOptions = {}): RedisOptions {
  const url = new URL(config.url);
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new Error(`REDIS_URL must start with redis:// or rediss://, got ${url.protocol}//`);
  }
  const tls = url.protocol === 'rediss:' ? { servername: url.hostname } : undefined;
  const auth: RedisOptions = {
    username: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    db: url.pathname && url.pathname !== '/' ? Number(url.pathname.slice(1)) : undefined,
  };
  if (config.sentinels && config.sentinels.length > 0) {
    if (!config.sentinelName) throw new Error('Sentinel mode needs the master name');
    return {
      ...auth,
      sentinels: config.sentinels,
      name: config.sentinelName,
      sentinelUsername: auth.username,
      sentinelPassword: auth.password,
      tls,
      enableTLSForSentinelMode: tls !== undefined,
      reconnectOnError: reconnectOnReadOnly,
      ...extra,
    };
  }
  return { ...auth, host: url.hostname, port: Number(url.port || 6379), tls, reconnectOnError: reconnectOnReadOnly, ...extra };
}

/**
 * A master that was replaced while it was unreachable (a pause, a partition) comes back as a replica and answers
 * every write with READONLY; so does a managed Redis's old primary behind a DNS name that moved. Reconnecting (2:
 * and resending the command) reaches the current master: through the sentinels, or through the name.
 */
function reconnectOnReadOnly(error: Error): 2 | false {
  return error.message.startsWith('READONLY') ? 2 : false;
}

/**
 * How long a command on a Redis Cluster waits for a replica to take over a failed master before it fails. A failover
 * with the default cluster-node-timeout (15 s) took 20 s in the failover tests; ioredis' own default (16 retries 100
 * ms apart) gave up after under 2 s, which cost prompts their attempts and api requests their answer.
 */
export const CLUSTER_FAILOVER_WAIT_MS = 60_000;
const CLUSTER_RETRY_DELAY_MS = 200;

function clusterOptions(config: RedisConnectionConfig, extra: RedisOptions, failoverWaitMs: number): ClusterOptions {
  const { retryStrategy, enableOfflineQueue, ...rest } = extra;
  const { host: _host, port: _port, db: _db, reconnectOnError: _reconnect, ...redisOptions } = redisConnectionOptions({ url: config.url }, rest);
  return {
    redisOptions,
    enableOfflineQueue,
    clusterRetryStrategy: retryStrategy ?? undefined,
    retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
    retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
    maxRedirections: Math.max(1, Math.ceil(failoverWaitMs / CLUSTER_RETRY_DELAY_MS)),
  };
}

export interface RedisClientOptions {
  /** Cluster only: how long a command waits for a new master during a failover (default CLUSTER_FAILOVER_WAIT_MS). */
  clusterFailoverWaitMs?: number;
}

/** A connected client for the configuration: a Cluster when cluster nodes are given, else a Redis. */
export function createRedisClient(config: RedisConnectionConfig, extra: RedisOptions = {}, options: RedisClientOptions = {}): RedisClient {
  if (config.clusterNodes && config.clusterNodes.length > 0) {
    return new Cluster(config.clusterNodes as ClusterNode[], clusterOptions(config, extra, options.clusterFailoverWaitMs ?? CLUSTER_FAILOVER_WAIT_MS));
  }
  return new Redis(redisConnectionOptions(config, extra));
}

export type MaxmemoryPolicyCheck =
  | { ok: true; policy: string }
  | { ok: false; policy: string; reason: string }
  | { ok: 'unknown'; reason: string };

/**
 * Queue jobs and results must never be evicted: Redis must run with maxmemory-policy noeviction. CONFIG is often
 * disabled on managed Redis; then the policy is unknown and the caller warns.
 */
export async function checkMaxmemoryPolicy(redis: RedisClient): Promise<MaxmemoryPolicyCheck> {
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1] ?? 'unknown';
    if (policy === 'noeviction') return { ok: true, policy };
    return {
      ok: false,
      policy,
      reason: `Redis maxmemory-policy is "${policy}": under memory pressure Redis would silently delete queued jobs and results. Set it to noeviction (redis-cli CONFIG SET maxmemory-policy noeviction, or maxmemory-policy noeviction in redis.conf).`,
    };
  } catch (error) {
    return { ok: 'unknown', reason: `could not read maxmemory-policy (${(error as Error).message}); make sure it is noeviction` };
  }
}
