// The Redis variables both apps read, as one schema: each app's config module merges it into its own and reads
// the environment itself; this module only says what the variables mean and how they are checked.
import { z } from 'zod';
import { parseHostPortList, type RedisConnectionConfig } from './connection';

export const redisEnvSchema = z.object({
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').default('redis://127.0.0.1:6379'),
  /** Key prefix of the queue and the store; on Redis Cluster it must start with a hash tag such as {falconq}. */
  FALCONQ_REDIS_PREFIX: z.string().min(1).regex(/^[^\s:]+$/, 'must not contain spaces or ":"').default('falconq'),
  /** Sentinel: comma-separated host:port of the sentinels, and the master's name. */
  FALCONQ_REDIS_SENTINELS: z.string().optional(),
  FALCONQ_REDIS_SENTINEL_NAME: z.string().min(1).optional(),
  /** Cluster: comma-separated host:port seed nodes. */
  FALCONQ_REDIS_CLUSTER_NODES: z.string().optional(),
});

export type RedisVariables = z.infer<typeof redisEnvSchema>;

/**
 * The connection config of the Redis variables, checked together: Sentinel needs the master's name, Cluster a prefix
 * that starts with a hash tag. Throws an Error whose message starts with the variable at fault.
 */
export function redisTopologyOf(variables: RedisVariables): RedisConnectionConfig {
  const { REDIS_URL: url, FALCONQ_REDIS_PREFIX: prefix, FALCONQ_REDIS_SENTINEL_NAME: sentinelName } = variables;
  const sentinels = variables.FALCONQ_REDIS_SENTINELS ? parseHostPortList(variables.FALCONQ_REDIS_SENTINELS, 'FALCONQ_REDIS_SENTINELS') : undefined;
  if (sentinels && !sentinelName) {
    throw new Error('FALCONQ_REDIS_SENTINEL_NAME: required with FALCONQ_REDIS_SENTINELS (the master name)');
  }
  const clusterNodes = variables.FALCONQ_REDIS_CLUSTER_NODES ? parseHostPortList(variables.FALCONQ_REDIS_CLUSTER_NODES, 'FALCONQ_REDIS_CLUSTER_NODES') : undefined;
  if (clusterNodes && !hasHashTag(prefix)) {
    throw new Error('FALCONQ_REDIS_PREFIX: with FALCONQ_REDIS_CLUSTER_NODES the prefix must start with a hash tag such as {falconq}');
  }
  return { url, sentinels, sentinelName, clusterNodes };
}

/** Whether a key prefix pins every key to one Cluster slot (multi-key Lua scripts need that). */
export function hasHashTag(prefix: string): boolean {
  return /^\{[^}]+\}/.test(prefix);
}
