// The whole service for a client test: a private Redis, the api and one worker process on the tiny model.
import { startApi, type ApiProcess } from './api-process';
import { startTestRedis, type TestRedis } from './redis';
import { tinyModelDir } from './tiny-model';
import { startWorker, type WorkerProcess } from './worker-process';

export interface ServiceStack {
  redis: TestRedis;
  api: ApiProcess;
  worker: WorkerProcess;
  stop(): Promise<void>;
}

/** One tenant key (`<apiKey>:team`), no rate limit, a worker with `slots` slots. */
export async function startServiceStack(apiKey: string, slots = 4): Promise<ServiceStack> {
  const redis = await startTestRedis();
  const modelDir = await tinyModelDir();
  const [api, worker] = await Promise.all([
    startApi({ redisUrl: redis.url, prefix: redis.prefix, modelDir, env: { FALCONQ_API_KEYS: `${apiKey}:team`, FALCONQ_RATE_LIMIT_PER_MINUTE: '0' } }),
    startWorker({ redisUrl: redis.url, prefix: redis.prefix, modelDir, slots }),
  ]);
  return {
    redis, api, worker,
    stop: async () => {
      await worker.stop();
      await api.stop();
      await redis.stop();
    },
  };
}
