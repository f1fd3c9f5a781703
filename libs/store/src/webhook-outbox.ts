// The webhook outbox: events of batches that reached a final status, written by the store's Lua scripts in the same
// atomic step as the status change (so none is lost, whoever finished the batch and whatever restarts), and sent by
// the api's dispatcher. Delivery is at least once: an event leaves the outbox only after its endpoint answered 2xx.
import type { RedisClient } from '@app/redis';
import { StoreKeys } from './redis-keys';
import { withStoreCommands } from './scripts';

export type WebhookEventType = 'batch.completed' | 'batch.failed' | 'batch.expired' | 'batch.cancelled';

export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  batchId: string;
  /** epoch ms of the status change */
  createdAt: number;
  /** Delivery attempts made so far. */
  attempts: number;
  lastError?: string;
}

export interface WebhookOutbox {
  /** While enabled, final status changes are written to the outbox; disabled, none are. */
  setEnabled(enabled: boolean): Promise<void>;
  /** Events due now, each leased for `leaseMs` to the caller. */
  claimDue(now: number, leaseMs: number, limit: number): Promise<WebhookEvent[]>;
  /** Delivered: removed from the outbox. */
  delivered(id: string): Promise<void>;
  /** Failed attempt: due again at `dueAt`. */
  retryAt(event: WebhookEvent, dueAt: number): Promise<void>;
  /** Given up on: moved to the dead letters. */
  giveUp(event: WebhookEvent): Promise<void>;
  /** Events waiting (due or leased). */
  pending(): Promise<number>;
}

export class RedisWebhookOutbox implements WebhookOutbox {
  private readonly keys: StoreKeys;

  constructor(private readonly redis: RedisClient, prefix: string) {
    this.keys = new StoreKeys(prefix);
  }

  async setEnabled(enabled: boolean): Promise<void> {
    if (enabled) await this.redis.set(this.keys.webhooksEnabled(), '1');
    else await this.redis.del(this.keys.webhooksEnabled());
  }

  async claimDue(now: number, leaseMs: number, limit: number): Promise<WebhookEvent[]> {
    const raw = (await withStoreCommands(this.redis).falconqClaimWebhooks(this.keys.webhookEvents(), this.keys.webhookDue(), now, leaseMs, limit)) as string[];
    return raw.map((json) => JSON.parse(json) as WebhookEvent);
  }

  async delivered(id: string): Promise<void> {
    await this.redis.multi().zrem(this.keys.webhookDue(), id).hdel(this.keys.webhookEvents(), id).exec();
  }

  async retryAt(event: WebhookEvent, dueAt: number): Promise<void> {
    await this.redis.multi().hset(this.keys.webhookEvents(), event.id, JSON.stringify(event)).zadd(this.keys.webhookDue(), dueAt, event.id).exec();
  }

  async giveUp(event: WebhookEvent): Promise<void> {
    await this.redis.multi()
      .hset(this.keys.webhookDead(), event.id, JSON.stringify(event))
      .zrem(this.keys.webhookDue(), event.id)
      .hdel(this.keys.webhookEvents(), event.id)
      .exec();
  }

  async pending(): Promise<number> {
    return this.redis.zcard(this.keys.webhookDue());
  }
}
