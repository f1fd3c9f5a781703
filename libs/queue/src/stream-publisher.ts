import Redis from 'ioredis';
import { streamChannel, type ItemResult, type StreamMessage } from '@app/contracts';

/** Publishes an online request's text deltas and its final result (see libs/contracts/src/stream.ts). */
export class StreamPublisher {
  private readonly redis: Redis;

  constructor(redisUrl: string, private readonly prefix: string) {
    // Deltas are best-effort: a delta that cannot be sent while Redis is away is dropped, not queued forever.
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: false });
    this.redis.on('error', () => undefined);
  }

  async delta(requestId: string, sequence: number, delta: string): Promise<void> {
    await this.publish(requestId, { type: 'delta', sequence, delta });
  }

  async done(requestId: string, result: ItemResult): Promise<void> {
    await this.publish(requestId, { type: 'done', result });
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  private async publish(requestId: string, message: StreamMessage): Promise<void> {
    await this.redis.publish(streamChannel(this.prefix, requestId), JSON.stringify(message));
  }
}
