import type { ConnectionOptions } from 'bullmq';
import { createRedisClient, hasHashTag, redisConnectionOptions, type RedisConnectionConfig } from '@app/redis';

/** Where the queue lives: one Redis and a key prefix shared by the api and every worker. */
export interface QueueLocation {
  redisUrl: string;
  /**
   * BullMQ key prefix. On Redis Cluster use a hash tag such as `{falconq}` so every key of the queue lands in one
   * slot (BullMQ's Lua scripts touch several keys at once).
   */
  prefix: string;
  /** Sentinel or Cluster topology (the same config the store gets); without it, `redisUrl` names a plain Redis. */
  redis?: RedisConnectionConfig;
}

/**
 * Options BullMQ builds its own ioredis clients from (it needs a blocking connection per worker).
 * `maxRetriesPerRequest: null` keeps commands queued while Redis restarts instead of failing them, so a worker
 * rides out a Redis restart; the retry strategy caps the reconnect delay at 2 s so it comes back quickly.
 */
const RESILIENT = {
  maxRetriesPerRequest: null,
  enableOfflineQueue: true,
  retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
};

export function queueConnection(redisUrl: string): ConnectionOptions {
  return { url: redisUrl, ...RESILIENT };
}

/** A connection for BullMQ and, for a Cluster, the client the caller must close (BullMQ never closes a given client). */
export interface OwnedConnection {
  connection: ConnectionOptions;
  close(): Promise<void>;
}

export function queueConnectionFor(location: QueueLocation): OwnedConnection {
  const redis = location.redis;
  if (redis?.clusterNodes && redis.clusterNodes.length > 0) {
    if (!hasHashTag(location.prefix)) {
      throw new Error(`queue prefix "${location.prefix}": on Redis Cluster it must start with a hash tag such as {falconq}`);
    }
    const client = createRedisClient(redis, RESILIENT);
    return { connection: client as unknown as ConnectionOptions, close: async () => void (await client.quit().catch(() => client.disconnect())) };
  }
  if (redis?.sentinels && redis.sentinels.length > 0) {
    return { connection: redisConnectionOptions(redis, RESILIENT) as ConnectionOptions, close: async () => undefined };
  }
  return { connection: queueConnection(location.redisUrl), close: async () => undefined };
}
