// What every falconq process started by a test shares: a clean environment (no inherited FALCONQ_* or REDIS_URL from
// the developer's shell) with the test's Redis, key prefix and model.

export interface ServiceConnection {
  redisUrl: string;
  prefix: string;
  modelDir: string;
}

export function serviceEnv(connection: ServiceConnection): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    REDIS_URL: connection.redisUrl,
    FALCONQ_REDIS_PREFIX: connection.prefix,
    MODEL_DIR: connection.modelDir,
  };
}
