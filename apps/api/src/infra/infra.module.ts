import { Global, Inject, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';
import { GenerateQueue } from '@app/queue';
import { createRedisClient, type RedisClient } from '@app/redis';
import { RedisStore } from '@app/store';
import { API_CONFIG, type ApiConfig } from '../config/api-config';
import { SERVED_MODEL, loadServedModel } from '../model/served-model';
import { JOB_QUEUE, type JobQueue } from './job-queue';

export const REDIS = Symbol('REDIS');
export const STORE = Symbol('STORE');
export const RATE_LIMITER = Symbol('RATE_LIMITER');

/** Redis connections, the store, the queue and the served model: created once, closed on shutdown. */
@Global()
@Module({
  providers: [
    {
      provide: REDIS,
      inject: [API_CONFIG],
      useFactory: (config: ApiConfig) => {
        // A command sent as the connection drops fails after one reconnect attempt instead of waiting out several:
        // routes check the connection first (RedisAvailability) and answer 503 while it is down.
        // On a Cluster likewise: a command waits about one Retry-After for a replica to take over, then fails (503).
        const client = createRedisClient(config.redis, { maxRetriesPerRequest: 1 }, { clusterFailoverWaitMs: 2_000 });
        const logger = new Logger('Redis');
        client.on('error', (error: Error) => logger.warn(`redis connection error: ${error.message}`));
        return client;
      },
    },
    {
      provide: STORE,
      inject: [API_CONFIG, REDIS],
      useFactory: (config: ApiConfig, redis: RedisClient) =>
        new RedisStore(redis, {
          prefix: config.prefix,
          fileRetentionSeconds: config.retention.fileSeconds,
          createSubscriber: () => {
            const subscriber = createRedisClient(config.redis);
            subscriber.on('error', () => undefined);
            return subscriber;
          },
        }),
    },
    {
      provide: RATE_LIMITER,
      inject: [STORE],
      useFactory: (store: RedisStore) => store.rateLimiter,
    },
    {
      provide: JOB_QUEUE,
      inject: [API_CONFIG],
      useFactory: (config: ApiConfig) =>
        new GenerateQueue({
          redisUrl: config.redis.url, redis: config.redis, prefix: config.prefix, attempts: config.jobAttempts,
          onError: () => undefined, // the api's own Redis client logs the outage once per reconnect attempt
        }),
    },
    {
      provide: SERVED_MODEL,
      inject: [API_CONFIG],
      useFactory: (config: ApiConfig) => loadServedModel(config.modelDir, config.modelName),
    },
  ],
  exports: [REDIS, STORE, RATE_LIMITER, JOB_QUEUE, SERVED_MODEL],
})
export class InfraModule implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: RedisClient,
    @Inject(STORE) private readonly store: RedisStore,
    @Inject(JOB_QUEUE) private readonly queue: JobQueue,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    await this.queue.close().catch(() => undefined);
    await this.store.close().catch(() => undefined);
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}
