import type { ConnectionOptions } from 'bullmq';

/** Where the queue lives: one Redis and a key prefix shared by the api and every worker. */
export interface QueueLocation {
  redisUrl: string;
  /**
   * BullMQ key prefix. On Redis Cluster use a hash tag such as `{falconq}` so every key of the queue lands in one
   * slot (BullMQ's Lua scripts touch several keys at once).
   */
  prefix: string;
}

/**
 * BullMQ builds its own ioredis clients from these options (it needs a blocking connection per worker).
 * `maxRetriesPerRequest: null` keeps commands queued while Redis restarts instead of failing them, so a worker
 * rides out a Redis restart; the retry strategy caps the reconnect delay at 2 s so it comes back quickly.
 */
export function queueConnection(redisUrl: string): ConnectionOptions {
  return {
    url: redisUrl,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
  };
}
